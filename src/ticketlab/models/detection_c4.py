"""Faster R-CNN in the C4 layout (`model.detection.layout: c4`): paper 001's VOC detector.

Paper 001 ran its VOC experiments with the PyTorch Faster R-CNN code of jwyang (its `prune_voc/`):
a ResNet cut after layer3 is the *base* whose stride-16 map feeds the RPN and RoI pooling, and
layer4 — the "classification network convolutions", *top* — runs on every pooled RoI, followed by
spatial averaging and the two FC layers of the "Box, Cls head". Table 3's module groups and their
parameter shares (Base 21.93, Top 66.39, RPN 9.71, Box+Cls 0.65 % on ResNet-18) are this network's.

Built from torchvision's own `FasterRCNN` (so its RPN, RoI sampling, losses and post-processing are
torchvision's), with three parts of our own:
  backbone  `C4Backbone`: conv1 … layer3 of the trunk, one feature map "0" at stride 16;
  rpn head  `WidthRPNHead`: 3×3 conv to `rpn_channels` (512, as Faster R-CNN and the paper's code),
            then 1×1 objectness (one logit per anchor, torchvision's sigmoid loss) and box deltas;
  box head  `C4BoxHead`: RoIAlign `c4_roi_size`² (14, torchvision ops) → layer4 (stride 2) → mean.
The whole trunk, layer4 included, stays one ResNet at `backbone.body`, so ResNet checkpoints,
ImageNet tickets and mask transfer map onto it key for key as for the FPN layout; the box head holds
layer4 as a plain reference (not a registered submodule), so each parameter has a single name.

Groups (DESIGN.md, C4): base = backbone.body.{conv1, bn1, layer1, layer2, layer3}, top =
backbone.body.layer4, rpn, box_predictor; nested in them, `stem` (conv1 + bn1) and `shortcut` (the
1×1 projection convs `layerN.0.downsample`). The paper's code prunes neither conv1 (its pattern
'base·conv·weight' misses `RCNN_base.0.weight`) nor the projections (a separate switch, off in
Table 3), so its Table 3 scope is `exclude: [stem, shortcut]`.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
from torch import nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
from torchvision.ops import MultiScaleRoIAlign

from ticketlab.config import DetectionConfig
from ticketlab.errors import TicketlabError
from ticketlab.models.resnet import stage_channels

BODY = "backbone.body"
C4_RPN_CHANNELS = 512            # Faster R-CNN's (and jwyang's) RPN conv width
C4_ANCHOR_SIZES = (128, 256, 512)  # anchor scales 8, 16, 32 × stride 16 (the paper's VOC code)
C4_GROUPS: dict[str, tuple[str, ...]] = {
    "base": tuple(f"{BODY}.{m}" for m in ("conv1", "bn1", "layer1", "layer2", "layer3")),
    "top": (f"{BODY}.layer4",),
    "rpn": ("rpn",),
    "box_predictor": ("roi_heads.box_predictor",),
}
C4_STEM = (f"{BODY}.conv1", f"{BODY}.bn1")


class C4Backbone(nn.Module):
    """conv1 … layer3 of `trunk` → {"0": stride-16 features}; layer4 stays in `body`, unused here."""

    def __init__(self, trunk: nn.Module) -> None:
        super().__init__()
        for head in ("fc", "avgpool"):  # the classifier head is not part of a detector
            if hasattr(trunk, head):
                delattr(trunk, head)
        self.body = trunk
        self.out_channels = stage_channels(trunk)[2]

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        b = self.body
        x = b.maxpool(b.relu(b.bn1(b.conv1(x))))
        return OrderedDict([("0", b.layer3(b.layer2(b.layer1(x))))])


class C4BoxHead(nn.Module):
    """layer4 on each pooled RoI, then the spatial mean: the box representation (N × C)."""

    def __init__(self, layer4: nn.Module) -> None:
        super().__init__()
        object.__setattr__(self, "_layer4", layer4)  # owned by the backbone's trunk (one name per weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._layer4(x).mean(dim=(2, 3))


class WidthRPNHead(nn.Module):
    """torchvision's RPNHead with a 3×3 conv to `mid` channels instead of the input width."""

    def __init__(self, in_channels: int, mid: int, num_anchors: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, mid, 3, padding=1)
        self.cls_logits = nn.Conv2d(mid, num_anchors, 1)
        self.bbox_pred = nn.Conv2d(mid, num_anchors * 4, 1)
        for layer in (self.conv, self.cls_logits, self.bbox_pred):  # torchvision's RPNHead init
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.constant_(layer.bias, 0)

    def forward(self, features: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        hidden = [torch.relu(self.conv(f)) for f in features]
        return [self.cls_logits(h) for h in hidden], [self.bbox_pred(h) for h in hidden]


def c4_groups() -> dict[str, tuple[str, ...]]:
    """The C4 groups (module paths), `stem` and `shortcut` nested in base/top."""
    shortcut = tuple(f"{BODY}.layer{k}.0.downsample" for k in (2, 3, 4))
    return {**C4_GROUPS, "stem": C4_STEM, "shortcut": shortcut}


def build_c4_fasterrcnn(family: str, trunk: nn.Module, opts: DetectionConfig, num_classes: int,
                        sampling: dict[str, Any]) -> nn.Module:
    """A C4 Faster R-CNN around `trunk` (a ResNet with layer4); `sampling` holds the image sizes and
    the RPN / RoI sampling and post-processing settings common to both layouts."""
    if family != "fasterrcnn":
        raise TicketlabError(f"model.detection.layout: c4 is built for fasterrcnn (paper 001's VOC model), "
                             f"not {family}; use layout: fpn")
    if opts.c4_roi_size < 2:
        raise TicketlabError(f"model.detection.c4_roi_size: expected at least 2, got {opts.c4_roi_size}")
    backbone = C4Backbone(trunk)
    sizes = tuple(int(s) for s in (opts.anchor_sizes or C4_ANCHOR_SIZES))
    anchors = AnchorGenerator((sizes,), (tuple(opts.aspect_ratios),))
    mid = opts.rpn_channels or C4_RPN_CHANNELS
    return FasterRCNN(
        backbone, rpn_anchor_generator=anchors,
        rpn_head=WidthRPNHead(backbone.out_channels, mid, anchors.num_anchors_per_location()[0]),
        box_roi_pool=MultiScaleRoIAlign(["0"], opts.c4_roi_size, 0),
        box_head=C4BoxHead(trunk.layer4),
        box_predictor=FastRCNNPredictor(stage_channels(trunk)[3], num_classes),
        **sampling,
    )

