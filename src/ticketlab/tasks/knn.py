"""Evaluating frozen features with labels: weighted kNN and a linear probe.

A self-supervised model has no classifier, so its pre-training task is scored by how well its
features separate the classes it never saw labels of. Weighted kNN (Wu et al. 2018, InstDisc; the
monitor of MoCo): L2-normalised features, the labelled training split as the memory bank, each
query's k most cosine-similar bank entries vote for their class with weight exp(sim / t); k = 200,
t = 0.1 by default. `weighting="uniform"` gives every neighbour one vote (scikit-learn's
KNeighborsClassifier with metric="cosine"). The linear probe fits scikit-learn's logistic
regression on the frozen bank features and scores it on the queries.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

QUERY_CHUNK = 1024  # queries per similarity matrix, bounding memory to chunk × bank size


def knn_predict(bank: torch.Tensor, bank_labels: torch.Tensor, queries: torch.Tensor, num_classes: int, *,
                k: int = 200, temperature: float = 0.1, weighting: str = "exp") -> torch.Tensor:
    """Predicted class of each query row. Features are L2-normalised here; k is capped at the bank
    size; ties between classes go to the lowest class index."""
    if weighting not in ("exp", "uniform"):
        raise ValueError(f"weighting must be 'exp' or 'uniform', got {weighting!r}")
    bank = F.normalize(bank.float(), dim=1)
    k = min(k, bank.shape[0])
    out = []
    for start in range(0, queries.shape[0], QUERY_CHUNK):
        q = F.normalize(queries[start:start + QUERY_CHUNK].float(), dim=1)
        sim, idx = (q @ bank.T).topk(k, dim=1)
        weights = (sim / temperature).exp() if weighting == "exp" else torch.ones_like(sim)
        votes = torch.zeros(q.shape[0], num_classes, device=q.device, dtype=weights.dtype)
        votes.scatter_add_(1, bank_labels[idx], weights)
        out.append(votes.argmax(dim=1))
    return torch.cat(out) if out else torch.empty(0, dtype=torch.long, device=queries.device)


def linear_probe_accuracy(train_x: torch.Tensor, train_y: torch.Tensor, val_x: torch.Tensor,
                          val_y: torch.Tensor, *, max_iter: int = 1000) -> float:
    """Accuracy on (val_x, val_y) of a logistic regression fitted on standardised frozen features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter))
    probe.fit(train_x.double().cpu().numpy(), train_y.cpu().numpy())
    return float(probe.score(val_x.double().cpu().numpy(), val_y.cpu().numpy()))
