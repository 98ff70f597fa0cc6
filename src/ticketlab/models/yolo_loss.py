"""YOLOv4's training loss: which predictions answer for which box, and CIoU + objectness + class terms.

Assignment (YOLOv4 §3.4, "using multiple anchors for a single ground truth"): a box is predicted by
the grid cell holding its centre, at every anchor whose shape IoU with the box (both centred at the
origin) exceeds `anchor_iou_thresh`, and always at its best-fitting anchor over all strides.

Loss terms, each summed and divided by the number of images (darknet's normalisation):
  loss_box = box_gain · Σ_positives (1 − CIoU)        (torchvision.ops.complete_box_iou_loss)
  loss_obj = obj_gain · Σ BCE(objectness, 1 at positives, 0 elsewhere); a negative whose decoded box
             overlaps a ground-truth box of its image by IoU > ignore_thresh is left out
  loss_cls = cls_gain · Σ_positives BCE(class logits, one-hot, optionally smoothed)
Labels follow torchvision's convention (1 … K, 0 = background, never a target label), so class k is
logit k − 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torchvision.ops import box_iou, complete_box_iou_loss

from ticketlab.config import YoloConfig
from ticketlab.models.yolo_anchors import shape_iou
from ticketlab.models.yolo_boxes import YoloBoxCoder, cell_grid


@dataclass
class Assigned:
    """The positives of one stride: which prediction (image, anchor, row, column) answers which box."""

    image: torch.Tensor
    anchor: torch.Tensor
    row: torch.Tensor
    col: torch.Tensor
    boxes: torch.Tensor   # (P, 4) xyxy, input pixels
    labels: torch.Tensor  # (P,) 1 … K


def assign(targets: Sequence[dict[str, torch.Tensor]], anchors: torch.Tensor, strides: Sequence[int],
           shapes: Sequence[tuple[int, int]], iou_thresh: float) -> list[Assigned]:
    """Positives per stride. anchors: (L strides, A, 2); shapes: each stride's (H, W)."""
    levels, per_level = anchors.shape[:2]
    device = anchors.device
    boxes = torch.cat([t["boxes"].to(anchors.dtype) for t in targets]) if targets else anchors.new_zeros(0, 4)
    labels = torch.cat([t["labels"] for t in targets]) if targets else torch.zeros(0, dtype=torch.long, device=device)
    owner = torch.cat([torch.full((len(t["boxes"]),), i, dtype=torch.long, device=device)
                       for i, t in enumerate(targets)]) if targets else labels
    overlap = shape_iou(boxes[:, 2:] - boxes[:, :2], anchors.reshape(-1, 2))
    chosen = overlap > iou_thresh
    if len(boxes):
        chosen[torch.arange(len(boxes), device=device), overlap.argmax(dim=1)] = True
    box_idx, flat = chosen.nonzero(as_tuple=True)
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    out = []
    for level, (stride, (height, width)) in enumerate(zip(strides, shapes)):
        here = flat // per_level == level
        g = box_idx[here]
        col = (centre[g, 0] / stride).floor().long().clamp(0, width - 1)
        row = (centre[g, 1] / stride).floor().long().clamp(0, height - 1)
        out.append(Assigned(owner[g], flat[here] % per_level, row, col, boxes[g], labels[g]))
    return out


class YoloLoss:
    """The three loss terms for head outputs of shape (N, A, H, W, 5 + K) per stride."""

    def __init__(self, cfg: YoloConfig, num_classes: int, coders: Sequence[YoloBoxCoder]) -> None:
        self.cfg = cfg
        self.num_classes = num_classes
        self.coders = list(coders)

    def __call__(self, outputs: Sequence[torch.Tensor], targets: Sequence[dict[str, torch.Tensor]],
                 anchors: torch.Tensor) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        images = outputs[0].shape[0]
        shapes = [(o.shape[2], o.shape[3]) for o in outputs]
        assigned = assign(targets, anchors, [c.stride for c in self.coders], shapes, cfg.anchor_iou_thresh)
        box = obj = cls = outputs[0].new_zeros(())
        for out, coder, level_anchors, pos in zip(outputs, self.coders, anchors, assigned):
            cells = cell_grid(out.shape[2], out.shape[3], out.device, out.dtype)
            decoded = coder.decode(out[..., :4], cells, level_anchors.view(-1, 1, 1, 2))
            weight = self._not_ignored(decoded.detach(), targets)
            obj_target = torch.zeros_like(out[..., 4])
            if len(pos.boxes):
                where = (pos.image, pos.anchor, pos.row, pos.col)
                box = box + complete_box_iou_loss(decoded[where], pos.boxes, reduction="sum")
                obj_target[where] = 1.0
                weight[where] = 1.0
                onehot = F.one_hot(pos.labels - 1, self.num_classes).to(out.dtype)
                smooth = cfg.label_smoothing
                onehot = onehot * (1 - smooth) + smooth / self.num_classes
                cls = cls + F.binary_cross_entropy_with_logits(out[where][:, 5:], onehot, reduction="sum")
            obj = obj + F.binary_cross_entropy_with_logits(out[..., 4], obj_target, weight=weight, reduction="sum")
        return {"loss_box": cfg.box_gain * box / images, "loss_obj": cfg.obj_gain * obj / images,
                "loss_cls": cfg.cls_gain * cls / images}

    def _not_ignored(self, decoded: torch.Tensor, targets: Sequence[dict[str, torch.Tensor]]) -> torch.Tensor:
        """1 where a prediction's no-object loss counts, 0 where its box already overlaps a ground truth
        by more than ignore_thresh (darknet's ignore_thresh). decoded: (N, A, H, W, 4)."""
        weight = torch.ones(decoded.shape[:-1], dtype=decoded.dtype, device=decoded.device)
        for i, t in enumerate(targets):
            if len(t["boxes"]):
                best = box_iou(decoded[i].reshape(-1, 4), t["boxes"].to(decoded.dtype)).max(dim=1).values
                weight[i] = (best <= self.cfg.ignore_thresh).to(decoded.dtype).view(weight.shape[1:])
        return weight
