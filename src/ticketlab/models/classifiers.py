"""Builders for the classification families and their module groups (DESIGN.md contract).

Groups: ImageNet and CIFAR ResNets have `stem` (the first conv and its norm), `layer1`…`layer4`
(`layer1`…`layer3` for CIFAR ResNets) and `fc`; LeNet-300-100 has `layer1`, `layer2`, `fc`;
Conv-2/4/6 have `stem`, `convs`, `hidden`, `fc` (see `conv_lth.py`).
Each builder draws its initial weights from the caller's (seeded) global RNG.
"""

from __future__ import annotations

from torch import nn

from ticketlab.config import ModelConfig
from ticketlab.data.bundle import DataBundle
from ticketlab.models.cifar_resnet import CifarResNet
from ticketlab.models.conv_lth import GROUPS as CONV_GROUPS, ConvNet
from ticketlab.models.lenet import LeNet300100
from ticketlab.models.resnet import replace_input_channels, torchvision_resnet
from ticketlab.models.spec import BuiltModel


def _resnet_groups(stages: int) -> dict[str, tuple[str, ...]]:
    groups: dict[str, tuple[str, ...]] = {"stem": ("conv1", "bn1")}
    groups.update({f"layer{i}": (f"layer{i}",) for i in range(1, stages + 1)})
    groups["fc"] = ("fc",)
    return groups


def build_resnet(depth: int, cfg: ModelConfig, data: DataBundle, num_classes: int) -> BuiltModel:
    """ImageNet-style torchvision ResNet; conv1 takes `data.in_channels` inputs."""
    module: nn.Module = torchvision_resnet(depth, cfg.width, num_classes=num_classes)
    replace_input_channels(module, "conv1", data.in_channels)
    return BuiltModel(module=module, groups=_resnet_groups(4))


def build_cifar_resnet(depth: int, cfg: ModelConfig, data: DataBundle, num_classes: int) -> BuiltModel:
    module = CifarResNet(depth, cfg.width, num_classes=num_classes, in_channels=data.in_channels)
    return BuiltModel(module=module, groups=_resnet_groups(3))


def build_lenet_300_100(cfg: ModelConfig, data: DataBundle, num_classes: int) -> BuiltModel:
    in_features = data.in_channels * data.image_size * data.image_size
    hidden = (max(1, int(round(300 * cfg.width))), max(1, int(round(100 * cfg.width))))
    module = LeNet300100(in_features, num_classes, hidden=hidden)
    return BuiltModel(module=module, groups={"layer1": ("layer1",), "layer2": ("layer2",), "fc": ("fc",)})


def build_conv_lth(depth: int, cfg: ModelConfig, data: DataBundle, num_classes: int) -> BuiltModel:
    """Conv-2/4/6 (lottery-ticket paper) for `data`'s channels and image size."""
    module = ConvNet(depth, data.in_channels, data.image_size, num_classes, width=cfg.width)
    return BuiltModel(module=module, groups=dict(CONV_GROUPS))
