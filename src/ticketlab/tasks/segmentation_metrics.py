"""Semantic-segmentation metrics as pure functions of a confusion matrix.

VOC's protocol (and paper 002's mIoU): accumulate one confusion matrix over every labelled pixel of
the validation set — pixels labelled `ignore_index` (255: VOC's object borders and "difficult"
regions, and the padding added to batch images of different sizes) count nowhere — then take
per class IoU = TP / (TP + FP + FN) and average it over the classes. A class that neither occurs
in the ground truth nor is ever predicted has no defined IoU; it is left out of the mean (as
mmsegmentation's nanmean does) rather than counted as 0 or 1.
"""

from __future__ import annotations

import torch

from ticketlab.data.voc_seg import IGNORE_INDEX


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int,
                     ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """(num_classes, num_classes) int64 counts; rows = ground truth, columns = prediction.

    `pred` and `target` are integer tensors of the same shape; target pixels equal to
    `ignore_index` are skipped. Any other value outside [0, num_classes) is a ValueError, since it
    means the masks and the model disagree on the label space.
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    keep = target != ignore_index
    t, p = target[keep].long(), pred[keep].long()
    for what, v in (("target", t), ("pred", p)):
        if v.numel() and (int(v.min()) < 0 or int(v.max()) >= num_classes):
            raise ValueError(f"{what} labels must be in [0, {num_classes}) (or {ignore_index} in target), "
                             f"got values in [{int(v.min())}, {int(v.max())}]")
    counts = torch.bincount(t * num_classes + p, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def iou_per_class(conf: torch.Tensor) -> torch.Tensor:
    """float64 IoU of each class; NaN where the class is absent from both ground truth and prediction."""
    conf = conf.double()
    tp = conf.diagonal()
    union = conf.sum(0) + conf.sum(1) - tp
    return torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))


def segmentation_metrics(conf: torch.Tensor, class_names: list[str]) -> dict[str, float]:
    """{"mIoU", "pixel_accuracy", "iou_<class>" for every class with a defined IoU}."""
    ious = iou_per_class(conf)
    total = conf.sum()
    metrics = {
        "mIoU": float(ious.nanmean()) if not ious.isnan().all() else 0.0,
        "pixel_accuracy": float(conf.diagonal().sum().double() / total) if total > 0 else 0.0,
    }
    for name, value in zip(class_names, ious.tolist()):
        if value == value:  # not NaN
            metrics[f"iou_{name}"] = value
    return metrics
