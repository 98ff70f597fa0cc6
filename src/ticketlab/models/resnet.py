"""torchvision ResNets with a channel-width multiplier.

Lottery-ticket experiments often shrink or widen a network to see how tickets scale, and the
R-CNN backbones of paper 001 are the same ResNets. Width 1.0 returns torchvision's own model
(identical architecture, state_dict keys and init), so pretrained torchvision weights load as-is.
Any other width returns `WidthResNet`, a subclass of torchvision's `ResNet` with the same module
names (conv1, bn1, layer1..4, fc) and scaled shapes. The stem has round(64·width) channels and
stage i has that times 2**i planes, so the stages double exactly as in torchvision and the
`inplanes // 8` arithmetic of torchvision.models.detection (resnet_fpn_backbone) still gives each
stage's output channels.
"""

from __future__ import annotations

from typing import Callable, Optional, Union

from torch import nn
from torchvision.models import resnet as tv_resnet
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from ticketlab.errors import TicketlabError

NormLayer = Optional[Callable[[int], nn.Module]]

_LAYERS: dict[int, tuple[type[Union[BasicBlock, Bottleneck]], list[int]]] = {
    18: (BasicBlock, [2, 2, 2, 2]),
    34: (BasicBlock, [3, 4, 6, 3]),
    50: (Bottleneck, [3, 4, 6, 3]),
    101: (Bottleneck, [3, 4, 23, 3]),
    152: (Bottleneck, [3, 8, 36, 3]),
}

_CONSTRUCTORS = {
    18: tv_resnet.resnet18,
    34: tv_resnet.resnet34,
    50: tv_resnet.resnet50,
    101: tv_resnet.resnet101,
    152: tv_resnet.resnet152,
}

RESNET_DEPTHS = tuple(sorted(_LAYERS))


def scaled_channels(channels: int, width: float) -> int:
    """`channels · width` rounded to the nearest integer, at least 1."""
    return max(1, int(round(channels * width)))


def init_like_torchvision(model: nn.Module) -> None:
    """torchvision's ResNet initialisation (Kaiming-normal convs, unit norms), for our own ResNets."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)


class WidthResNet(ResNet):
    """torchvision's ResNet with every stage's channels scaled by `width` (same module names)."""

    def __init__(
        self,
        block: type[Union[BasicBlock, Bottleneck]],
        layers: list[int],
        width: float,
        num_classes: int = 1000,
        norm_layer: NormLayer = None,
    ) -> None:
        # Mirrors torchvision.models.resnet.ResNet.__init__ (groups=1, width_per_group=64), with 64
        # replaced by the scaled stem width; calling nn.Module.__init__ directly
        # avoids building (and drawing random numbers for) a full-width model first.
        nn.Module.__init__(self)
        if norm_layer is None:
            norm_layer = nn.BatchNorm2d
        self._norm_layer = norm_layer
        self.width = width
        base = scaled_channels(64, width)
        self.inplanes = base
        self.dilation = 1
        self.groups = 1
        self.base_width = 64
        self.conv1 = nn.Conv2d(3, base, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = norm_layer(base)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, base, layers[0])
        self.layer2 = self._make_layer(block, base * 2, layers[1], stride=2)
        self.layer3 = self._make_layer(block, base * 4, layers[2], stride=2)
        self.layer4 = self._make_layer(block, base * 8, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(base * 8 * block.expansion, num_classes)
        init_like_torchvision(self)


def torchvision_resnet(
    depth: int, width: float = 1.0, num_classes: int = 1000, norm_layer: NormLayer = None,
) -> ResNet:
    """A randomly initialised torchvision ResNet-`depth`, channels scaled by `width`.

    depth ∈ {18, 34, 50, 101, 152}. width == 1.0 calls torchvision's own constructor.
    DeepLab's dilation is applied afterwards (models/dilation.py).
    """
    if depth not in _LAYERS:
        raise TicketlabError(
            f"resnet depth: expected one of {', '.join(map(str, RESNET_DEPTHS))}, got {depth!r}"
        )
    if not width > 0:
        raise TicketlabError(f"model.width: expected a positive number, got {width!r}")
    if width == 1.0:
        return _CONSTRUCTORS[depth](weights=None, num_classes=num_classes, norm_layer=norm_layer)
    block, layers = _LAYERS[depth]
    return WidthResNet(block, layers, width, num_classes=num_classes, norm_layer=norm_layer)


def stage_channels(model: ResNet) -> list[int]:
    """Output channels of layer1..layer4 of a (possibly width-scaled) torchvision ResNet."""
    out = []
    for name in ("layer1", "layer2", "layer3", "layer4"):
        last = getattr(model, name)[-1]
        conv = last.conv3 if isinstance(last, Bottleneck) else last.conv2
        out.append(int(conv.out_channels))
    return out


def replace_input_channels(model: nn.Module, attr: str, in_channels: int) -> None:
    """Swap the Conv2d at `model.<attr>` for one taking `in_channels` inputs (fresh default init)."""
    old = getattr(model, attr)
    if old.in_channels == in_channels:
        return
    new = nn.Conv2d(
        in_channels, old.out_channels, kernel_size=old.kernel_size, stride=old.stride,
        padding=old.padding, dilation=old.dilation, groups=old.groups, bias=old.bias is not None,
    )
    if isinstance(model, ResNet):  # keep torchvision's ResNet init for the stem
        nn.init.kaiming_normal_(new.weight, mode="fan_out", nonlinearity="relu")
    setattr(model, attr, new)
