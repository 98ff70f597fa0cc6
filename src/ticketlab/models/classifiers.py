"""Builders for the classification families and their module groups (DESIGN.md contract).

Groups: ImageNet and CIFAR ResNets have `stem` (the first conv and its norm), `layer1`…`layer4`
(`layer1`…`layer3` for CIFAR ResNets) and `fc`; LeNet-300-100 has `layer1`, `layer2`, `fc`;
Conv-2/4/6 have `stem`, `convs`, `hidden`, `fc` (see `conv_lth.py`).
Each builder draws its initial weights from the caller's (seeded) global RNG. When `model.weights`
is set, the file is loaded after building: `fc` may be absent or of another size (it stays freshly
initialised, as when transferring a pretrained backbone to a new label set), and a checkpoint in
another wrapping (MoCo, SimCLR, a detector's) fills the ResNet trunk (`models/resnet_keys.py`).
Every family here registers as a CLASSIFIER in `ticketlab.registry.MODEL_FAMILIES`.
"""

from __future__ import annotations

from functools import partial
from typing import Callable

from torch import nn

from ticketlab.config import ModelConfig
from ticketlab.data.bundle import DataBundle
from ticketlab.errors import TicketlabError
from ticketlab.models.cifar_resnet import CIFAR_RESNET_DEPTHS, CifarResNet
from ticketlab.models.conv_lth import GROUPS as CONV_GROUPS, PLANS as CONV_LTH_DEPTHS, ConvNet
from ticketlab.models.lenet import LeNet300100
from ticketlab.models.resnet import RESNET_DEPTHS, replace_input_channels, torchvision_resnet
from ticketlab.models.resnet_keys import load_model_weights
from ticketlab.models.spec import CLASSIFIER, BuiltModel, ModelFamily
from ticketlab.registry import MODEL_FAMILIES


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


def classifier(build: Callable[[ModelConfig, DataBundle, int], BuiltModel]) -> Callable[[ModelConfig, DataBundle], BuiltModel]:
    """A family builder from `build(cfg, data, num_classes)`: the class count (model.num_classes
    or the dataset's) checked, `model.weights` loaded with a fresh `fc` allowed."""

    def family_builder(cfg: ModelConfig, data: DataBundle) -> BuiltModel:
        num_classes = cfg.num_classes if cfg.num_classes is not None else data.num_classes
        if num_classes < 1:
            raise TicketlabError(f"model.num_classes: expected a positive integer, got {num_classes}")
        built = build(cfg, data, num_classes)
        if cfg.weights:
            built.loaded = load_model_weights(built.module, cfg.weights, new_modules=("fc",), prefix=cfg.weights_prefix)
        return built

    return family_builder


def resnet_export_note(cfg: ModelConfig, data: DataBundle) -> str:
    classes = cfg.num_classes if cfg.num_classes is not None else data.num_classes
    if cfg.width == 1.0 and data.in_channels == 3:
        return f"loads into torchvision.models.{cfg.family}(num_classes={classes}) with strict=True"
    return (f"model.width={cfg.width}, {data.in_channels} input channels: fits the same {cfg.family} architecture "
            f"at that width, not the stock torchvision {cfg.family}; build it with ticketlab.models.build_model "
            "from the run's config.yaml")


def _stage_groups(stages: int) -> tuple[str, ...]:
    return tuple(_resnet_groups(stages))


for _depth in RESNET_DEPTHS:
    MODEL_FAMILIES.register(f"resnet{_depth}", ModelFamily(
        classifier(partial(build_resnet, _depth)), CLASSIFIER, _stage_groups(4), export_note=resnet_export_note))
for _depth in CIFAR_RESNET_DEPTHS:
    MODEL_FAMILIES.register(f"cifar_resnet{_depth}", ModelFamily(
        classifier(partial(build_cifar_resnet, _depth)), CLASSIFIER, _stage_groups(3)))
# An MLP: random crops and flips shift pixels under its fixed input weights and hurt it (the
# lottery-ticket paper's LeNet-300-100 used no augmentation), so a null data.augment means none.
MODEL_FAMILIES.register("lenet_300_100", ModelFamily(classifier(build_lenet_300_100), CLASSIFIER,
                                                     ("layer1", "layer2", "fc"), augment=False))
for _depth in CONV_LTH_DEPTHS:
    MODEL_FAMILIES.register(f"conv{_depth}", ModelFamily(
        classifier(partial(build_conv_lth, _depth)), CLASSIFIER, tuple(CONV_GROUPS)))
