"""Image classification: cross-entropy training, accuracy (and top-5) evaluation.

Batches are (images, labels) pairs as produced by the classification datasets in `data/`. The
headline metric is top-1 accuracy, the number the lottery-ticket papers report per sparsity level.
"""

from __future__ import annotations

from typing import Any, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from ticketlab.data.bundle import CLASS_LABELS
from ticketlab.errors import TicketlabError
from ticketlab.models.spec import CLASSIFIER
from ticketlab.registry import TASKS
from ticketlab.tasks.base import Task

TOP_K = 5


class ClassificationTask(Task):
    name = "classification"
    metrics = ("accuracy",)
    headline = "accuracy"
    higher_is_better = True
    data_needs = frozenset({CLASS_LABELS})
    model_kinds = (CLASSIFIER,)
    shards_evaluation = True

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes

    @classmethod
    def build(cls, cfg, data) -> "ClassificationTask":
        return cls(num_classes=data.num_classes)

    @staticmethod
    def _split(batch: Any, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = batch[0], batch[1]
        return images.to(device, non_blocking=True), labels.to(device, non_blocking=True)

    def loss(self, model: nn.Module, batch: Any, device: torch.device) -> dict[str, torch.Tensor]:
        images, labels = self._split(batch, device)
        return {"loss": F.cross_entropy(model(images), labels)}

    def evaluate(self, model: nn.Module, loader: Iterable, device: torch.device) -> dict[str, float]:
        """Accuracy, top-5 accuracy (more than 5 classes only) and mean cross-entropy over `loader`.

        Leaves model.train()/eval() as the caller set it.
        """
        return self.merge_evaluations([self.evaluate_shard(model, loader, device)])

    def evaluate_shard(self, model: nn.Module, loader: Iterable, device: torch.device) -> dict[str, float]:
        """The sums behind `evaluate` over one slice of the validation set (a DDP rank's)."""
        use_top_k = self.num_classes > TOP_K
        correct = torch.zeros((), dtype=torch.float64, device=device)
        correct_k = torch.zeros((), dtype=torch.float64, device=device)
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        count = 0
        with torch.no_grad():
            for batch in loader:
                images, labels = self._split(batch, device)
                logits = model(images).float()
                loss_sum += F.cross_entropy(logits, labels, reduction="sum").double()
                correct += (logits.argmax(dim=1) == labels).sum()
                if use_top_k:
                    top = logits.topk(TOP_K, dim=1).indices
                    correct_k += (top == labels[:, None]).any(dim=1).sum()
                count += labels.numel()
        return {"correct": correct.item(), "correct_k": correct_k.item(), "loss_sum": loss_sum.item(),
                "count": count}

    def merge_evaluations(self, shards: list[dict[str, float]]) -> dict[str, float]:
        """Metrics from the `evaluate_shard` sums of every slice."""
        count = sum(s["count"] for s in shards)
        if count == 0:
            raise TicketlabError("data.val: the validation loader yielded no samples; expected a non-empty split")
        metrics = {"accuracy": sum(s["correct"] for s in shards) / count}
        if self.num_classes > TOP_K:
            metrics["top5_accuracy"] = sum(s["correct_k"] for s in shards) / count
        metrics["val_loss"] = sum(s["loss_sum"] for s in shards) / count
        return metrics


TASKS.register(ClassificationTask.name, ClassificationTask)
