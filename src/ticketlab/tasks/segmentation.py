"""Semantic segmentation (paper 002's VOC 2012 task): pixel-wise cross-entropy, mIoU evaluation.

Batches are (images B×3×H×W, masks B×H×W int64) from `data/segmentation.py`; the model is a
torchvision segmentation model returning {"out": logits at input size, "aux": … when it has an
auxiliary head}. Pixels labelled 255 (VOC's borders, batch padding) are ignored by the loss and by
the metrics. The headline is mIoU over the whole validation set (`segmentation_metrics.py`).
"""

from __future__ import annotations

from typing import Any, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from ticketlab.data.bundle import PIXEL_LABELS
from ticketlab.data.voc_seg import IGNORE_INDEX
from ticketlab.errors import TicketlabError
from ticketlab.models.spec import SEGMENTER
from ticketlab.registry import TASKS
from ticketlab.tasks.base import Task
from ticketlab.tasks.segmentation_metrics import confusion_matrix, segmentation_metrics

AUX_WEIGHT = 0.5  # torchvision's segmentation reference


class SemanticSegmentationTask(Task):
    name = "semantic_segmentation"
    metrics = ("mIoU",)
    headline = "mIoU"
    higher_is_better = True
    data_needs = frozenset({PIXEL_LABELS})
    model_kinds = (SEGMENTER,)

    def __init__(self, num_classes: int, class_names: list[str]) -> None:
        self.num_classes = num_classes
        self.class_names = class_names or [str(i) for i in range(num_classes)]

    @classmethod
    def build(cls, cfg, data) -> "SemanticSegmentationTask":
        return cls(num_classes=data.num_classes, class_names=list(data.class_names))

    @staticmethod
    def _split(batch: Any, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        images, masks = batch[0], batch[1]
        return images.to(device, non_blocking=True), masks.to(device, non_blocking=True)

    def loss(self, model: nn.Module, batch: Any, device: torch.device) -> dict[str, torch.Tensor]:
        images, masks = self._split(batch, device)
        out = model(images)
        terms = {"loss_out": F.cross_entropy(out["out"], masks, ignore_index=IGNORE_INDEX)}
        if "aux" in out:
            terms["loss_aux"] = F.cross_entropy(out["aux"], masks, ignore_index=IGNORE_INDEX)
        return {"loss": terms["loss_out"] + AUX_WEIGHT * terms.get("loss_aux", 0.0), **terms}

    def evaluate(self, model: nn.Module, loader: Iterable, device: torch.device) -> dict[str, float]:
        """mIoU, pixel accuracy and per-class IoU from one confusion matrix over `loader`."""
        conf = torch.zeros(self.num_classes, self.num_classes, dtype=torch.int64, device=device)
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        with torch.no_grad():
            for batch in loader:
                images, masks = self._split(batch, device)
                logits = model(images)["out"].float()
                conf += confusion_matrix(logits.argmax(dim=1), masks, self.num_classes)
                loss_sum += F.cross_entropy(logits, masks, ignore_index=IGNORE_INDEX, reduction="sum").double()
        conf = conf.cpu()
        pixels = int(conf.sum())  # the labelled (not ignored) pixels
        if pixels == 0:
            raise TicketlabError("data.val: the validation loader yielded no labelled pixels; expected a "
                                 "non-empty split whose masks are not all 255")
        return {**segmentation_metrics(conf, self.class_names), "val_loss": loss_sum.item() / pixels}


TASKS.register(SemanticSegmentationTask.name, SemanticSegmentationTask)
