"""DeepLabv3+ (paper 002's segmentation model): segmentation_models_pytorch's decoder on ticketlab's ResNet.

Chen et al. 2018 (DeepLabv3+) put a decoder behind DeepLabV3's ASPP: the ASPP output (output
stride 16) is upsampled ×4 and fused with the stride-4 low-level features of layer1 (reduced to 48
channels by a 1×1 conv) through a 3×3 conv; the logits are upsampled ×4 to the input. The decoder
and the head are segmentation_models_pytorch's `DeepLabV3PlusDecoder` and `SegmentationHead`
(depthwise-separable ASPP and fusion convs, ASPP dropout 0.5, as smp's DeepLabV3Plus), built with
`encoder_weights` never involved: nothing is downloaded. The encoder is not smp's: it is ticketlab's
torchvision ResNet (any depth and `model.width`; dilated by `models/dilation.py`, which also dilates
ResNet-18/34's BasicBlocks, so paper 002's CPU-scale quarter-width ResNet-18 runs at output stride 16),
because a ticket transfers only between identical trunks, and ticketlab's classifiers, SimCLR/MoCo
models and detectors are width-scaled at CPU scale, which smp's fixed-width encoders cannot match.

Module names: `backbone.*` (an IntermediateLayerGetter over the ResNet: backbone.conv1,
backbone.layer1 …, the names of `deeplabv3`, so the same checkpoints and tickets fit), `decoder.*`
(ASPP + low-level fusion), `segmentation_head.*` (1×1 class conv). Groups: base = stem + layer1–3,
top = layer4, decoder, classifier = segmentation_head, stem. Paper 002 prunes the ResNet minus
its first conv; the decoder and the head stay dense.

smp's decoder upsamples by a fixed ×4, so the input sides must be multiples of the output stride:
images are zero-padded (after normalisation: the mean colour) at the bottom and right up to the next
multiple and the logits cropped back, so any image size works (VOC's 500×375 is run as 512×384).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models._utils import IntermediateLayerGetter

from ticketlab.config import ModelConfig
from ticketlab.data.bundle import DataBundle
from ticketlab.errors import TicketlabError
from ticketlab.models.resnet_keys import load_model_weights
from ticketlab.models.segmentation import BACKBONES, segmentation_groups, segmentation_trunk
from ticketlab.models.spec import SEGMENTER, BuiltModel, ModelFamily
from ticketlab.registry import MODEL_FAMILIES

STEM_OUT = "relu"  # torchvision ResNet's stem output (stride 2), smp's second feature
LAYERS = ("layer1", "layer2", "layer3", "layer4")
LOW_LEVEL_STRIDE = 4  # layer1's stride, where the decoder fuses and outputs
ASPP_DROPOUT = 0.5  # smp's DeepLabV3Plus default
HEAD = "segmentation_head.0"  # the class conv, whose size is the number of classes
DEFAULT_STRIDE = 16  # Chen et al. 2018 (and paper 002's configs)


class DeepLabV3Plus(nn.Module):
    """ResNet trunk → smp DeepLabV3PlusDecoder → SegmentationHead; returns {"out": logits at input size}."""

    def __init__(self, trunk: nn.Module, channels: list[int], in_channels: int, num_classes: int,
                 rates: list[int], decoder_channels: int, output_stride: int) -> None:
        super().__init__()
        from segmentation_models_pytorch.base import SegmentationHead
        from segmentation_models_pytorch.decoders.deeplabv3.decoder import DeepLabV3PlusDecoder

        if output_stride not in (8, 16):
            raise TicketlabError(f"model.segmentation.output_stride: deeplabv3plus takes 8 or 16, got {output_stride}")
        if len(rates) != 3:
            raise TicketlabError(f"model.segmentation.atrous_rates: deeplabv3plus takes 3 rates, got {rates}")
        self.output_stride = output_stride
        self.backbone = IntermediateLayerGetter(trunk, return_layers={STEM_OUT: "stem", **{n: n for n in LAYERS}})
        stem = int(trunk.conv1.out_channels)
        # smp's encoder contract: features at strides 1, 2, 4, 8, 16(or 8), 32(or 16 / 8)
        self.decoder = DeepLabV3PlusDecoder(
            encoder_channels=[in_channels, stem, *channels], encoder_depth=5, out_channels=decoder_channels,
            atrous_rates=tuple(rates), output_stride=output_stride, aspp_separable=True, aspp_dropout=ASPP_DROPOUT)
        # the decoder's output is at layer1's stride 4
        self.segmentation_head = SegmentationHead(decoder_channels, num_classes, kernel_size=1,
                                                  upsampling=LOW_LEVEL_STRIDE)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h, w = x.shape[-2:]
        pad_h, pad_w = (-h) % self.output_stride, (-w) % self.output_stride
        padded = F.pad(x, (0, pad_w, 0, pad_h)) if pad_h or pad_w else x
        features = [padded]  # smp's decoder indexes the list by stride; a list built in a loop scripts
        for feature in self.backbone(padded).values():
            features.append(feature)
        fused = self.decoder(features)
        return {"out": self.segmentation_head(fused)[..., :h, :w]}


def groups() -> dict[str, tuple[str, ...]]:
    return {**segmentation_groups(aux=False), "decoder": ("decoder",), "classifier": ("segmentation_head",)}


def build_deeplabv3plus(cfg: ModelConfig, data: DataBundle) -> BuiltModel:
    """DeepLabv3+ on `cfg.backbone` for `data.num_classes` classes (background included)."""
    if cfg.segmentation.aux_loss:
        raise TicketlabError("model.segmentation.aux_loss: deeplabv3plus has no auxiliary head (DeepLabv3+ "
                             "trains without one); expected false")
    trunk = segmentation_trunk(cfg, data, DEFAULT_STRIDE)
    module = DeepLabV3Plus(trunk.resnet, trunk.channels, int(trunk.resnet.conv1.in_channels), trunk.num_classes,
                           trunk.rates, cfg.segmentation.head_channels, trunk.output_stride)
    built = BuiltModel(module=module, groups=groups())
    if cfg.weights:  # a whole DeepLabv3+ (the class conv may differ), or any checkpoint holding a ResNet
        built.loaded = load_model_weights(module, cfg.weights, new_modules=(HEAD,), prefix=cfg.weights_prefix)
    return built


MODEL_FAMILIES.register("deeplabv3plus", ModelFamily(build_deeplabv3plus, SEGMENTER, tuple(groups()),
                                                     backbones=tuple(BACKBONES)))
