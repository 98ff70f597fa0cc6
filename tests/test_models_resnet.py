"""torchvision_resnet: width 1 is torchvision's model; other widths keep names and scale shapes."""

import pytest
import torch
import torchvision
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor

from ticketlab.errors import TicketlabError
from ticketlab.models.resnet import stage_channels, torchvision_resnet


@pytest.mark.parametrize("depth", [18, 50])
def test_width_one_is_torchvision(depth):
    torch.manual_seed(0)
    ours = torchvision_resnet(depth, num_classes=7)
    torch.manual_seed(0)
    ref = getattr(torchvision.models, f"resnet{depth}")(weights=None, num_classes=7)
    assert type(ours) is type(ref)
    ours_sd, ref_sd = ours.state_dict(), ref.state_dict()
    assert list(ours_sd) == list(ref_sd)
    for k, v in ref_sd.items():
        assert torch.equal(ours_sd[k], v), k


@pytest.mark.parametrize("depth,width", [(18, 0.25), (18, 0.3), (50, 0.125), (34, 0.75), (18, 1.25)])
def test_width_scales_shapes_keeps_keys(depth, width):
    with torch.device("meta"):  # keys only: skip allocating and initialising the full-width reference
        ref = getattr(torchvision.models, f"resnet{depth}")(weights=None)
    model = torchvision_resnet(depth, width, num_classes=5)
    assert isinstance(model, torchvision.models.ResNet)
    assert list(model.state_dict()) == list(ref.state_dict())
    base = max(1, round(64 * width))
    expansion = 4 if depth >= 50 else 1
    assert model.conv1.out_channels == base
    assert stage_channels(model) == [base * expansion * 2**i for i in range(4)]
    assert model.fc.in_features == base * 8 * expansion and model.fc.out_features == 5
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 5)


def test_width_scaled_resnet_works_as_fpn_backbone():
    model = torchvision_resnet(18, 0.3)
    backbone = _resnet_fpn_extractor(model, trainable_layers=3)  # uses inplanes // 8 internally
    out = backbone(torch.randn(1, 3, 64, 64))
    assert [v.shape[1] for v in out.values()] == [backbone.out_channels] * 5


def test_tiny_width_rounds_up_to_one_channel():
    assert torchvision_resnet(18, 0.001).conv1.out_channels == 1


@pytest.mark.parametrize("depth,width", [(19, 1.0), (18, 0.0), (18, -1.0)])
def test_bad_arguments(depth, width):
    with pytest.raises(TicketlabError):
        torchvision_resnet(depth, width)
