"""DeepLabV3 builder on a width-scaled torchvision ResNet, and the trunk both DeepLab families share.

Paper 002's own model, DeepLabv3+ (`deeplabv3plus`), lives in `models/deeplabv3plus.py` and builds
its trunk with `segmentation_trunk` here (same checks, dilation, atrous-rate rule and group names).

The model is torchvision's own `DeepLabV3` class with its standard module names — `backbone.*`
(an IntermediateLayerGetter over the ResNet: backbone.conv1, backbone.layer1 …), `classifier.*`
(ASPP head) and `aux_classifier.*` (FCN head on layer3) — so torchvision's deeplabv3_resnet50
state_dicts, and ResNet classification checkpoints under the `backbone.` prefix, fit as-is.

`deeplabv3` is torchvision's model as is (ASPP, logits upsampled bilinearly to the input), without
the v3+ decoder; paper 002's configs use `deeplabv3plus`.

Output stride: the ResNet's layer3-4 (OS 8, torchvision's default) or layer4 (OS 16) trade their
stride for dilation after construction (`models/dilation.py`, which also dilates ResNet-18/34's
BasicBlocks, which torchvision refuses to); OS 32 leaves the ResNet as it is.

Module groups (DESIGN.md; the same names, and the same stages, as the R-CNN family's C4 and FPN layouts):
  base = backbone.{conv1, bn1, layer1, layer2, layer3}   top = backbone.layer4
  classifier = classifier (ASPP head)   aux_classifier = aux_classifier (when aux_loss is on)
  stem = backbone.{conv1, bn1} (inside base; paper 002 never prunes the first conv nor the heads)
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn
from torchvision.models import ResNet
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.segmentation.deeplabv3 import ASPP, DeepLabV3
from torchvision.models.segmentation.fcn import FCNHead

from ticketlab.config import ModelConfig
from ticketlab.data.bundle import DataBundle
from ticketlab.errors import TicketlabError
from ticketlab.models.dilation import dilate_resnet
from ticketlab.models.resnet import stage_channels, torchvision_resnet
from ticketlab.models.resnet_keys import load_model_weights
from ticketlab.models.spec import SEGMENTER, BuiltModel, ModelFamily
from ticketlab.registry import MODEL_FAMILIES

BACKBONES = {"resnet18": 18, "resnet34": 34, "resnet50": 50, "resnet101": 101}
DEFAULT_BACKBONE = "resnet50"  # paper 002's backbone
BODY = "backbone"
STEM = (f"{BODY}.conv1", f"{BODY}.bn1")
RATES_AT_OS8 = (12, 24, 36)  # torchvision's DeepLabHead; DeepLabv3 uses 6, 12, 18 at OS 16
DEFAULT_STRIDE = 8  # torchvision's deeplabv3_resnet50
HEADS = ("classifier.4", "aux_classifier.4")  # the 1×1 convs whose size is the number of classes


def segmentation_groups(aux: bool) -> dict[str, tuple[str, ...]]:
    groups = {
        "base": (*STEM, f"{BODY}.layer1", f"{BODY}.layer2", f"{BODY}.layer3"),
        "top": (f"{BODY}.layer4",),
        "classifier": ("classifier",),
    }
    if aux:
        groups["aux_classifier"] = ("aux_classifier",)
    groups["stem"] = STEM
    return groups


def deeplab_head(in_channels: int, num_classes: int, rates: list[int], channels: int) -> nn.Sequential:
    """torchvision's DeepLabHead (same layers and indices, so the same state_dict keys) with
    `channels` instead of its fixed 256, so a CPU-sized model need not carry a 256-wide ASPP."""
    return nn.Sequential(
        ASPP(in_channels, rates, out_channels=channels),
        nn.Conv2d(channels, channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(channels),
        nn.ReLU(),
        nn.Conv2d(channels, num_classes, 1),
    )


@dataclass
class Trunk:
    """The dilated ResNet of a DeepLab model and the sizes its head is built for."""

    resnet: ResNet
    channels: list[int]  # output channels of layer1..layer4
    num_classes: int
    rates: list[int]
    output_stride: int


def segmentation_trunk(cfg: ModelConfig, data: DataBundle, default_stride: int) -> Trunk:
    """`cfg.backbone` dilated to `model.segmentation.output_stride` (null = `default_stride`), with the
    class count, head width and atrous rates (null = 12, 24, 36 at OS 8, scaled) checked."""
    name = cfg.backbone or DEFAULT_BACKBONE  # one of the family's backbones (build_model checks it)
    num_classes = cfg.num_classes if cfg.num_classes is not None else data.num_classes
    if num_classes < 2:
        raise TicketlabError(f"model.num_classes: segmentation needs at least 2 classes (background + one), "
                             f"got {num_classes}")
    opts = cfg.segmentation
    if opts.head_channels < 1:
        raise TicketlabError(f"model.segmentation.head_channels: expected a positive integer, got {opts.head_channels}")
    os_ = opts.output_stride if opts.output_stride is not None else default_stride
    resnet = dilate_resnet(torchvision_resnet(BACKBONES[name], cfg.width), os_)  # checks os_
    rates = list(opts.atrous_rates or [r * 8 // os_ for r in RATES_AT_OS8])
    if len(rates) < 1 or min(rates) < 1:
        raise TicketlabError(f"model.segmentation.atrous_rates: expected positive integers, got {rates}")
    return Trunk(resnet, stage_channels(resnet), num_classes, rates, os_)


def build_segmentation_model(cfg: ModelConfig, data: DataBundle) -> BuiltModel:
    """DeepLabV3 on `cfg.backbone` for `data.num_classes` classes (background included)."""
    trunk = segmentation_trunk(cfg, data, DEFAULT_STRIDE)
    opts, channels, num_classes = cfg.segmentation, trunk.channels, trunk.num_classes
    return_layers = {"layer4": "out", **({"layer3": "aux"} if opts.aux_loss else {})}
    backbone = IntermediateLayerGetter(trunk.resnet, return_layers=return_layers)
    classifier = deeplab_head(channels[3], num_classes, trunk.rates, opts.head_channels)
    aux = FCNHead(channels[2], num_classes) if opts.aux_loss else None
    built = BuiltModel(module=DeepLabV3(backbone, classifier, aux), groups=segmentation_groups(opts.aux_loss))
    if cfg.weights:  # a whole DeepLabV3 (class convs may differ), or any checkpoint holding a ResNet
        built.loaded = load_model_weights(built.module, cfg.weights, new_modules=HEADS, prefix=cfg.weights_prefix)
    return built


def export_note(cfg: ModelConfig, data: DataBundle) -> str:
    stock = (cfg.width == 1.0 and cfg.segmentation.head_channels == 256 and (cfg.backbone or DEFAULT_BACKBONE)
             in ("resnet50", "resnet101") and cfg.segmentation.output_stride in (None, 8)
             and cfg.segmentation.atrous_rates is None)
    if stock:
        return (f"loads with strict=True into torchvision.models.segmentation.deeplabv3_"
                f"{cfg.backbone or DEFAULT_BACKBONE}(weights=None, weights_backbone=None, num_classes="
                f"{cfg.num_classes or data.num_classes}, aux_loss={cfg.segmentation.aux_loss})")
    return ("a DeepLabV3 of this run's sizes (width, head channels, output stride), not torchvision's stock "
            "deeplabv3_resnet50/101; build it with ticketlab.models.build_model from the run's config.yaml")


MODEL_FAMILIES.register("deeplabv3", ModelFamily(build_segmentation_model, SEGMENTER,
                                                 tuple(segmentation_groups(aux=True)), backbones=tuple(BACKBONES),
                                                 export_note=export_note))
