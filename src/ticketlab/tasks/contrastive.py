"""Self-supervised pre-training tasks of paper 002: SimCLR (NT-Xent) and MoCo v2 (momentum contrast).

IMP runs on them like on any task, so the masks m_P of the pre-training task itself can be found.
Batches are `((view1, view2), label)` from `data/views.py`; the label is ignored by the losses.

Evaluation, headline `retrieval_accuracy` (paper 002 App. A.2, Eq. 2; `tasks/retrieval.py`): the
validation split as fixed pairs of augmented views (`DataBundle.val_views`, sample i's pair seeded
by i), cut in split order into batches of `ssl.retrieval_batch_size` samples; in each batch every
one of the 2n views retrieves its most cosine-similar other view, the two branches' embeddings
being SimCLR's projections of both views, or MoCo's query q(view 1) and key k(view 2) (query and
momentum encoder, the two branches of MoCo; `ssl.moco_retrieval: query` scores q(view 2) instead,
for runs too short for the momentum encoder to catch up, docs/ssl.md). The number is the correct retrievals over all views of
all batches. Only full batches count (a smaller batch has fewer distractors and would score higher),
unless the split is smaller than one batch, which is then one batch. Second metric: weighted kNN
accuracy of the backbone features with the labelled training split as the memory bank
(`knn_accuracy`), optionally a linear probe.

- SimCLR: both views go through the model in one batch (BatchNorm sees all 2N images, as in
  SimCLR); loss = NT-Xent over the 2N embeddings, each view's positive being the other view.
- MoCo v2: queries from view 1, keys from view 2 through the momentum encoder (no gradient);
  logits = [q·k⁺, q·queue] / t, target 0; the batch's keys then replace the oldest queue entries,
  and after each optimizer step the key encoder moves towards the query encoder (`after_step`).
  MoCo's shuffling BN needs several devices; on one device it is left out.
"""

from __future__ import annotations

from typing import Any, Iterable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ticketlab.config import SSLConfig
from ticketlab.data.bundle import CLASS_LABELS
from ticketlab.data.views import contrastive_bundle
from ticketlab.errors import TicketlabError
from ticketlab.models.contrastive import ContrastiveModel, MoCoModel, contrastive_model
from ticketlab.models.contrastive_weights import load_contrastive_parts
from ticketlab.models.spec import CLASSIFIER
from ticketlab.models.weights import load_weights_file
from ticketlab.registry import TASKS
from ticketlab.tasks.base import Task
from ticketlab.tasks.knn import knn_predict, linear_probe_accuracy
from ticketlab.tasks.retrieval import retrieval_hits


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's normalised-temperature cross-entropy: mean over all 2N anchors of
    -log(exp(s(i, pos)/t) / Σ_{k≠i} exp(s(i, k)/t)), s = cosine similarity."""
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    sim = (z @ z.T) / temperature
    self_pairs = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    sim = sim.masked_fill(self_pairs, float("-inf"))
    positives = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(sim, positives)


def moco_logits(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, temperature: float) -> torch.Tensor:
    """[q·k, q·queue] / t with q, k (N×D) normalised here and the queue's rows (K×D) already unit
    keys (they are enqueued normalised); the positive is column 0."""
    q, k = F.normalize(q.float(), dim=1), F.normalize(k.float(), dim=1)
    positive = (q * k).sum(dim=1, keepdim=True)
    negatives = q @ queue.float().T
    return torch.cat([positive, negatives], dim=1) / temperature


class ContrastiveTask(Task):
    """What SimCLR and MoCo share: the classification data as two views per image, the classifier
    as backbone + projection (the whole pre-training checkpoint loaded into it), retrieval accuracy
    (Eq. 2) of the two branches' embeddings, kNN (and linear-probe) accuracy of backbone features."""

    metrics = ("retrieval_accuracy", "knn_accuracy", "linear_probe_accuracy")
    headline = "retrieval_accuracy"
    higher_is_better = True
    data_needs = frozenset({CLASS_LABELS})  # labels only for the kNN evaluation
    model_kinds = (CLASSIFIER,)
    model_class: type[ContrastiveModel] = ContrastiveModel

    def __init__(self, memory: Dataset, num_classes: int, cfg: SSLConfig, views: Dataset, workers: int = 0) -> None:
        if cfg.temperature <= 0 or cfg.knn_temperature <= 0:
            raise TicketlabError("ssl.temperature / ssl.knn_temperature: expected positive numbers, got "
                                 f"{cfg.temperature} / {cfg.knn_temperature}")
        if cfg.knn_k < 1:
            raise TicketlabError(f"ssl.knn_k: expected a positive integer, got {cfg.knn_k}")
        if cfg.retrieval_batch_size < 2:
            raise TicketlabError(f"ssl.retrieval_batch_size: expected an integer ≥ 2 (a view needs another "
                                 f"sample to be confused with), got {cfg.retrieval_batch_size}")
        self.memory, self.num_classes, self.cfg, self.views = memory, num_classes, cfg, views
        self.workers = workers  # DataLoader workers of the evaluation's own loaders (data.num_workers)

    def branches(self, model: nn.Module, v1: torch.Tensor, v2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The two branches' embeddings (z, z') of a batch of view pairs, as Eq. 2 compares them."""
        raise NotImplementedError

    def retrieval(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        """Eq. 2 over the full batches of the fixed validation view pairs (see the module docstring)."""
        n = min(self.cfg.retrieval_batch_size, len(self.views))  # type: ignore[arg-type]
        if n < 2:
            raise TicketlabError(f"data.val: retrieval accuracy needs at least 2 validation samples, got {n}")
        hits = total = 0
        with torch.no_grad():
            for batch in DataLoader(self.views, batch_size=n, drop_last=True, num_workers=self.workers):
                v1, v2 = self._views(batch, device)
                hits += retrieval_hits(*self.branches(model, v1, v2))
                total += 2 * len(v1)
        return {"retrieval_accuracy": hits / total}

    @classmethod
    def build(cls, cfg, data) -> "ContrastiveTask":
        return cls(memory=data.memory, num_classes=data.num_classes, cfg=cfg.ssl, views=data.val_views,
                   workers=cfg.data.num_workers)

    @classmethod
    def adapt_data(cls, data, cfg):
        return contrastive_bundle(data, cfg.data.format)

    @classmethod
    def adapt_model(cls, built, cfg):
        """The contrastive wrapper; with `model.weights`, the rest of the checkpoint (projection MLP,
        MoCo's key encoder and queue) loads into it too (`models/contrastive_weights.py`)."""
        wrapped = contrastive_model(built, cfg.ssl, cls.name, cls.model_class)
        wrapped.loaded = built.loaded
        if cfg.model.weights and built.loaded is not None:
            state = load_weights_file(cfg.model.weights)  # read again: the family builder loaded the trunk
            parts = load_contrastive_parts(wrapped.module, state, f"model.weights={cfg.model.weights}", built.loaded)
            wrapped.loaded = {**built.loaded, **parts}
        return wrapped

    @staticmethod
    def _views(batch: Any, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        (v1, v2), _ = batch
        return v1.to(device, non_blocking=True), v2.to(device, non_blocking=True)

    @staticmethod
    def features(model: nn.Module, loader: Iterable, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(backbone features, labels) of every sample of a labelled loader."""
        feats, labels = [], []
        with torch.no_grad():
            for images, y in loader:
                feats.append(model.features(images.to(device, non_blocking=True)).float())
                labels.append(torch.as_tensor(y).to(device))
        if not feats:
            raise TicketlabError("data.val: the validation loader yielded no samples; expected a non-empty split")
        return torch.cat(feats), torch.cat(labels)

    def evaluate(self, model: nn.Module, loader: Iterable, device: torch.device) -> dict[str, float]:
        batch_size = getattr(loader, "batch_size", None) or 256
        memory = DataLoader(self.memory, batch_size=batch_size, num_workers=self.workers)
        bank, bank_y = self.features(model, memory, device)
        queries, y = self.features(model, loader, device)
        pred = knn_predict(bank, bank_y, queries, self.num_classes, k=self.cfg.knn_k,
                           temperature=self.cfg.knn_temperature)
        metrics = {**self.retrieval(model, device), "knn_accuracy": (pred == y).double().mean().item()}
        if self.cfg.linear_probe:
            metrics["linear_probe_accuracy"] = linear_probe_accuracy(bank, bank_y, queries, y)
        return metrics


class SimCLRTask(ContrastiveTask):
    name = "simclr"

    def branches(self, model: nn.Module, v1: torch.Tensor, v2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return model(v1), model(v2)

    def loss(self, model: nn.Module, batch: Any, device: torch.device) -> dict[str, torch.Tensor]:
        v1, v2 = self._views(batch, device)
        z1, z2 = model(torch.cat([v1, v2])).chunk(2)
        return {"loss": nt_xent(z1, z2, self.cfg.temperature)}


class MoCoTask(ContrastiveTask):
    name = "moco"
    model_class = MoCoModel

    def branches(self, model: nn.Module, v1: torch.Tensor, v2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return model(v1), model.keys(v2) if self.cfg.moco_retrieval == "key" else model(v2)

    def loss(self, model: nn.Module, batch: Any, device: torch.device) -> dict[str, torch.Tensor]:
        v1, v2 = self._views(batch, device)
        q, k = model(v1), model.keys(v2)
        # the queue is updated in place below; the graph keeps this step's copy
        logits = moco_logits(q, k, model.queue.clone(), self.cfg.temperature)
        loss = F.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.long, device=logits.device))
        model.enqueue(F.normalize(k.float(), dim=1))
        return {"loss": loss}

    def after_step(self, model: nn.Module) -> None:
        model.momentum_update()


TASKS.register(SimCLRTask.name, SimCLRTask)
TASKS.register(MoCoTask.name, MoCoTask)
