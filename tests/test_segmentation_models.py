"""DeepLabV3 builder: torchvision's layout and names, module groups, output stride, weight loading."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file
from torchvision.models.segmentation import deeplabv3_resnet50

from ticketlab.config import ModelConfig, SegmentationConfig
from ticketlab.data.bundle import DataBundle
from ticketlab.errors import TicketlabError
from ticketlab.models import build_model
from ticketlab.models.resnet import torchvision_resnet
from ticketlab.sparsity.scope import in_group

DATA = DataBundle(train=[], val=[], num_classes=5, in_channels=3, image_size=64)


def _cfg(backbone="resnet18", width=0.25, weights=None, **seg) -> ModelConfig:
    return ModelConfig(family="deeplabv3", backbone=backbone, width=width, weights=weights,
                       segmentation=SegmentationConfig(**seg))


def test_defaults_match_torchvision_deeplabv3_resnet50():
    torch.manual_seed(0)
    ours = build_model(_cfg("resnet50", 1.0, aux_loss=True), DataBundle([], [], 21, 3, 520)).module.state_dict()
    ref = deeplabv3_resnet50(weights=None, weights_backbone=None, num_classes=21, aux_loss=True).state_dict()
    assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in ref.items()}


@pytest.mark.parametrize("backbone,os_,aux", [("resnet18", None, True), ("resnet50", 16, False), ("resnet50", 8, True)])
def test_output_stride_groups_and_logits(backbone, os_, aux):
    built = build_model(_cfg(backbone, output_stride=os_, aux_loss=aux, head_channels=16), DATA)
    model = built.module.eval()
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        features = model.backbone(x)["out"]
        out = model(x)
    expected = os_ or 8  # torchvision's default, BasicBlock ResNets too (models/dilation.py)
    assert tuple(features.shape[-2:]) == (64 // expected, 96 // expected)
    assert out["out"].shape == (2, 5, 64, 96) and (("aux" in out) == aux)
    names = [n for n, _ in model.named_parameters()]
    parts = ["base", "top", "classifier"] + (["aux_classifier"] if aux else [])
    for n in names:  # the groups split the parameters exactly; stem lies inside base
        assert sum(in_group(n, built.groups[g]) for g in parts) == 1, n
        if in_group(n, built.groups["stem"]):
            assert n.startswith(("backbone.conv1.", "backbone.bn1."))
        if n.startswith("backbone."):  # DESIGN.md: base = conv1 … layer3, top = layer4, as the R-CNNs
            assert in_group(n, built.groups["top"]) == n.startswith("backbone.layer4."), n
    assert all(n.startswith(("backbone.", "classifier.", "aux_classifier.")) for n in names)


def test_refuses_unknown_output_stride_and_backbone():
    with pytest.raises(TicketlabError, match="model.segmentation.output_stride: expected 8, 16 or 32, got 4"):
        build_model(_cfg("resnet34", output_stride=4), DATA)
    with pytest.raises(TicketlabError, match="model.backbone"):
        build_model(_cfg("resnet51"), DATA)


def test_resnet_classification_checkpoint_loads_into_backbone(tmp_path):
    torch.manual_seed(1)
    trunk = torchvision_resnet(18, 0.25, num_classes=1000)
    path = tmp_path / "r18.safetensors"
    save_file({k: v.contiguous() for k, v in trunk.state_dict().items()}, str(path))
    built = build_model(_cfg(weights=str(path), head_channels=16), DATA)
    state = built.module.state_dict()
    for k, v in trunk.state_dict().items():
        if not k.startswith("fc."):
            assert torch.equal(state[f"backbone.{k}"], v), k
    other = tmp_path / "r34.safetensors"
    save_file({k: v.contiguous() for k, v in torchvision_resnet(34, 0.25).state_dict().items()}, str(other))
    with pytest.raises(TicketlabError, match=r"does not fit the model.s under .backbone\.. \(other depth or width\?\)"):
        build_model(_cfg(weights=str(other)), DATA)


def test_whole_deeplab_checkpoint_loads_except_the_class_convs(tmp_path):
    torch.manual_seed(2)
    source = build_model(_cfg(head_channels=16, aux_loss=True), DataBundle([], [], 21, 3, 64)).module
    path = tmp_path / "deeplab.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    state = build_model(_cfg(weights=str(path), head_channels=16, aux_loss=True), DATA).module.state_dict()
    for k, v in source.state_dict().items():
        if k.startswith(("classifier.4.", "aux_classifier.4.")):
            assert state[k].shape[0] == DATA.num_classes != v.shape[0]  # 5 classes here, 21 in the file
        else:
            assert torch.equal(state[k], v), k
