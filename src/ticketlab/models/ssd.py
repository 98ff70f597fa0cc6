"""SSD (Liu et al. 2016) on a torchvision ResNet: torchvision's own `SSD` class, our feature extractor.

Paper 002 (App. B.2) trains SSD with a ResNet-50 backbone but does not say which maps feed the
heads. Here: layer2, layer3, layer4 (strides 8, 16, 32: 38, 19, 10 at SSD300's 300 px, the sizes of
VGG-SSD300's first three maps) and then extra blocks (1×1 conv to half the channels, 3×3 conv;
BatchNorm + ReLU after each) under `backbone.extra`, each shrinking the map as SSD300 does —
stride 2 while it is larger than 3, a valid 3×3 conv from 3 to 1 — until it is 1×1: 5, 3, 1 at
300 px, so SSD300's six maps. The whole trunk is kept (rather than NVIDIA's layer4-less variant) so
ResNet checkpoints and masks map onto it (models/resnet_keys.py).

Default boxes: torchvision's DefaultBoxGenerator with SSD300's aspect ratios ([2] on the first and
the last two maps, [2, 3] between) and `model.ssd.scales` (null: its linear 0.15 … 0.9 rule).
Matching (IoU 0.5), hard-negative mining (3:1), the smooth-L1 + cross-entropy loss, the resize to a
fixed square, normalisation and the post-processing are torchvision's.

Not reproduced (no detail in paper 002; the data pipeline here is the shared horizontal flip): SSD's
photometric distortion, zoom-out and IoU-crop augmentation, which the SSD paper credits with most
of its accuracy.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
from torchvision.models.detection.ssd import SSD, SSDHead

from ticketlab.config import ModelConfig, SSDConfig
from ticketlab.data.bundle import DataBundle
from ticketlab.errors import TicketlabError
from ticketlab.models.resnet_keys import load_model_weights
from ticketlab.models.resnet_trunk import BACKBONES, DEFAULT_SCOPE, detector_classes, resnet_body, trunk_groups
from ticketlab.models.spec import BOX_DETECTOR, BuiltModel, ModelFamily
from ticketlab.registry import MODEL_FAMILIES

TRUNK_STRIDE = 32


def halvings(size: int, times: int) -> int:
    """Side of a map after `times` stride-2 convs/pools with padding (ceil each time), as in a ResNet."""
    for _ in range(times):
        size = (size + 1) // 2
    return size


def extra_block(cin: int, cout: int, side: int) -> tuple[nn.Sequential, int]:
    """One extra block for a side×side input and the side it outputs."""
    stride, padding = (1, 0) if side == 3 else (2, 1)
    mid = max(1, cout // 2)
    block = nn.Sequential(nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
                          nn.Conv2d(mid, cout, 3, stride, padding, bias=False), nn.BatchNorm2d(cout),
                          nn.ReLU(inplace=True))
    return block, 1 if side == 3 else (side + 1) // 2


class SSDResNetFeatures(nn.Module):
    """ResNet layer2 … layer4 (`body`) then the extra blocks (`extra`): SSD's feature maps, as a dict."""

    def __init__(self, body: nn.Module, trunk_channels: list[int], extra_channels: list[int], input_size: int) -> None:
        super().__init__()
        self.body = body
        side = halvings(input_size, 5)  # conv1, maxpool, layer2, layer3, layer4
        self.out_channels = list(trunk_channels[1:])
        blocks = []
        for cout in extra_channels:
            if side <= 1:
                break
            block, side = extra_block(self.out_channels[-1], cout, side)
            blocks.append(block)
            self.out_channels.append(cout)
        self.extra = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        maps = list(self.body(x).values())
        for block in self.extra:
            maps.append(block(maps[-1]))
        return OrderedDict((str(i), m) for i, m in enumerate(maps))


def ssd_aspect_ratios(maps: int) -> list[list[int]]:
    """SSD300's pattern for any number of maps: [2] on the first and the last two, [2, 3] between."""
    return [[2] if i == 0 or i >= maps - 2 else [2, 3] for i in range(maps)]


def groups() -> dict[str, tuple[str, ...]]:
    return {**trunk_groups(), "extra": ("backbone.extra",), "head": ("head",)}


def build_ssd(cfg: ModelConfig, data: DataBundle) -> BuiltModel:
    """SSD on `cfg.backbone` (default ResNet-50) for `data`; num_classes counts the background."""
    opts: SSDConfig = cfg.ssd
    num_classes = detector_classes(cfg, data.num_classes)
    size = opts.input_size or data.image_size
    if size < TRUNK_STRIDE:
        raise TicketlabError(f"model.ssd.input_size: expected at least {TRUNK_STRIDE} px, got {size}")
    if not opts.extra_channels or min(opts.extra_channels) < 1:
        raise TicketlabError(f"model.ssd.extra_channels: expected positive channel counts, got {opts.extra_channels}")
    body, channels = resnet_body(cfg, opts.norm, "model.ssd.norm", {"layer2": "0", "layer3": "1", "layer4": "2"})
    features = SSDResNetFeatures(body, channels, list(opts.extra_channels), size)
    maps = len(features.out_channels)
    if opts.scales is not None and len(opts.scales) != maps + 1:
        raise TicketlabError(f"model.ssd.scales: expected {maps + 1} scales ({maps} feature maps at {size} px, plus "
                             f"one), got {len(opts.scales)}")
    anchors = DefaultBoxGenerator(ssd_aspect_ratios(maps), scales=opts.scales)
    head = SSDHead(features.out_channels, anchors.num_anchors_per_location(), num_classes)
    module = SSD(features, anchors, (size, size), num_classes, head=head, score_thresh=opts.score_thresh,
                 nms_thresh=opts.nms_thresh, detections_per_img=opts.detections_per_img, iou_thresh=opts.iou_thresh,
                 topk_candidates=opts.topk_candidates, positive_fraction=opts.positive_fraction)
    built = BuiltModel(module=module, groups=groups())
    if cfg.weights:  # a whole SSD (its class convs may differ), or any checkpoint holding a ResNet
        built.loaded = load_model_weights(module, cfg.weights, new_modules=("head.classification_head",),
                                          prefix=cfg.weights_prefix)
    return built


MODEL_FAMILIES.register("ssd", ModelFamily(build_ssd, BOX_DETECTOR, tuple(groups()), tuple(DEFAULT_SCOPE),
                                           backbones=tuple(BACKBONES)))
