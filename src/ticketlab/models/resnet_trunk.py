"""The ResNet trunk shared by the single-stage detectors (YOLOv4, SSD), its module groups, their class count.

Both detectors keep the whole torchvision ResNet (conv1 … layer4, no avgpool/fc) under
`backbone.body`, the prefix torchvision's R-CNNs use, so `models/resnet_keys.py` maps a classifier's,
a SimCLR's or a MoCo's ResNet onto it and masks found on one transfer to the other.

Groups (DESIGN.md names): stem = backbone.body.{conv1, bn1}; layer1 … layer4 = the stages (shortcut
convs inside their stage); base = stem + layer1 + layer2 and top = layer3 + layer4, as for the R-CNNs
and DeepLabV3. The default scope is layer1 … layer4: paper 002 (§3) never prunes the first conv nor
the task-specific layers (neck, extra layers, heads).

Norm: `auto` gives trainable BatchNorm2d from scratch and FrozenBatchNorm2d (the pretrained
statistics kept) when `model.weights` is set, as for the R-CNNs (models/detection.py).
"""

from __future__ import annotations

from torch import nn
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.ops.misc import FrozenBatchNorm2d

from ticketlab.config import ModelConfig
from ticketlab.errors import TicketlabError
from ticketlab.models.resnet import stage_channels, torchvision_resnet

BACKBONES = {"resnet18": 18, "resnet34": 34, "resnet50": 50, "resnet101": 101}
DEFAULT_BACKBONE = "resnet50"  # paper 002's backbone
BODY = "backbone.body"
STAGES = ("layer1", "layer2", "layer3", "layer4")
DEFAULT_SCOPE = list(STAGES)


def trunk_norm(mode: str, pretrained: bool, key: str) -> type[nn.Module]:
    """The ResNet's norm layer for `mode` (auto | batchnorm | frozen); `key` names the config key."""
    if mode == "auto":
        mode = "frozen" if pretrained else "batchnorm"
    if mode == "frozen":
        return FrozenBatchNorm2d
    if mode == "batchnorm":
        return nn.BatchNorm2d
    raise TicketlabError(f"{key}: expected auto, batchnorm or frozen, got {mode!r}")


def resnet_body(cfg: ModelConfig, norm: str, key: str, return_layers: dict[str, str]) -> tuple[nn.Module, list[int]]:
    """`cfg.backbone` (default ResNet-50) at `cfg.width` as an IntermediateLayerGetter returning
    `return_layers`, and the output channels of layer1 … layer4 (the family registry has checked
    `cfg.backbone` against BACKBONES)."""
    trunk = torchvision_resnet(BACKBONES[cfg.backbone or DEFAULT_BACKBONE], cfg.width, norm_layer=trunk_norm(norm, bool(cfg.weights), key))
    channels = stage_channels(trunk)
    return IntermediateLayerGetter(trunk, return_layers=return_layers), channels


def detector_classes(cfg: ModelConfig, num_classes: int) -> int:
    """Classes incl. the background (torchvision's convention): cfg.num_classes or the dataset's."""
    n = cfg.num_classes if cfg.num_classes is not None else num_classes
    if n < 2:
        raise TicketlabError(f"model.num_classes: a detector needs at least 2 classes (background + one), got {n}")
    return n


def trunk_groups() -> dict[str, tuple[str, ...]]:
    """stem, layer1 … layer4, base, top under `backbone.body`."""
    stem = (f"{BODY}.conv1", f"{BODY}.bn1")
    stages = {s: (f"{BODY}.{s}",) for s in STAGES}
    return {"stem": stem, **stages,
            "base": (*stem, f"{BODY}.layer1", f"{BODY}.layer2"),
            "top": (f"{BODY}.layer3", f"{BODY}.layer4")}
