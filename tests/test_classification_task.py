"""ClassificationTask: loss = cross-entropy; metrics agree with scikit-learn on the same logits."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import accuracy_score, log_loss, top_k_accuracy_score
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ticketlab.errors import TicketlabError
from ticketlab.tasks import build_task
from ticketlab.tasks.classification import ClassificationTask


class FixedLogits(nn.Module):
    """Returns stored logits for the sample indices it is fed (input = index column)."""

    def __init__(self, logits):
        super().__init__()
        self.register_buffer("logits", logits)
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, idx):
        return self.logits[idx.long().view(-1)] * self.scale


def loader_for(logits, labels, batch_size=7):
    idx = torch.arange(len(labels))
    return DataLoader(TensorDataset(idx, labels), batch_size=batch_size)


@pytest.mark.parametrize("num_classes", [3, 10])
def test_metrics_match_sklearn(num_classes):
    g = torch.Generator().manual_seed(num_classes)
    n = 53
    logits = torch.randn(n, num_classes, generator=g) * 2
    labels = torch.randint(0, num_classes, (n,), generator=g)
    model = FixedLogits(logits)
    model.train()
    task = ClassificationTask(num_classes)
    got = task.evaluate(model, loader_for(logits, labels), torch.device("cpu"))
    assert model.training  # evaluate leaves the mode alone
    y, s = labels.numpy(), logits.numpy().astype(np.float64)
    assert got["accuracy"] == pytest.approx(accuracy_score(y, s.argmax(1)), abs=1e-12)
    probs = torch.softmax(logits.double(), 1).numpy()
    assert got["val_loss"] == pytest.approx(log_loss(y, probs, labels=list(range(num_classes))), rel=1e-5)
    if num_classes > 5:
        expected = top_k_accuracy_score(y, s, k=5, labels=list(range(num_classes)))
        assert got["top5_accuracy"] == pytest.approx(expected, abs=1e-12)
    else:
        assert "top5_accuracy" not in got
    assert all(isinstance(v, float) for v in got.values())
    assert set(got) >= {task.headline}


def test_loss_is_cross_entropy_and_differentiable():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(8, 4, generator=g)
    labels = torch.randint(0, 4, (8,), generator=g)
    model = FixedLogits(logits)
    task = ClassificationTask(4)
    out = task.loss(model, (torch.arange(8), labels), torch.device("cpu"))
    assert torch.allclose(out["loss"], F.cross_entropy(logits, labels))
    out["loss"].backward()
    assert model.scale.grad is not None


def test_protocol_attributes_and_registry():
    task = build_task("classification", type("D", (), {"num_classes": 10})())
    assert isinstance(task, ClassificationTask)
    assert (task.name, task.headline, task.higher_is_better) == ("classification", "accuracy", True)


def test_empty_loader_is_an_error():
    model = FixedLogits(torch.zeros(1, 3))
    with pytest.raises(TicketlabError, match="data.val"):
        ClassificationTask(3).evaluate(model, [], torch.device("cpu"))


def test_lenet_learns_digits_end_to_end():
    """Real data, real model, real task: a few epochs of Adam reach well above chance."""
    from ticketlab.config import DataConfig, ModelConfig
    from ticketlab.data import build_data
    from ticketlab.models import build_model

    torch.manual_seed(0)
    data = build_data(DataConfig(format="digits"))
    model = build_model(ModelConfig(family="lenet_300_100"), data).module
    task = ClassificationTask(data.num_classes)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    cpu = torch.device("cpu")
    for _ in range(3):
        for batch in DataLoader(data.train, batch_size=64, shuffle=True):
            opt.zero_grad()
            task.loss(model, batch, cpu)["loss"].backward()
            opt.step()
    model.eval()
    metrics = task.evaluate(model, DataLoader(data.val, batch_size=256), cpu)
    assert metrics["accuracy"] > 0.9 and metrics["top5_accuracy"] >= metrics["accuracy"]
