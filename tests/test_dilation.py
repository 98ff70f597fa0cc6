"""dilate_resnet: torchvision's own dilation on Bottleneck ResNets, the same rule on BasicBlocks, names and
values untouched, the input model left as it was."""

import pytest
import torch
from torch import nn
from torchvision.models.resnet import Bottleneck, ResNet

from ticketlab.errors import TicketlabError
from ticketlab.models.dilation import dilate_resnet
from ticketlab.models.resnet import torchvision_resnet

TORCHVISION = {8: [False, True, True], 16: [False, False, True], 32: [False, False, False]}


def conv_geometry(model: nn.Module) -> dict[str, tuple]:
    return {n: (m.stride, m.dilation, m.padding) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}


def layer4_side(model: nn.Module, side: int) -> int:
    x = torch.randn(1, 3, side, side)
    with torch.no_grad():
        for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"):
            x = getattr(model, name)(x)
    return x.shape[-1]


@pytest.mark.parametrize("os_", [8, 16, 32])
def test_bottleneck_resnet_dilates_as_torchvision(os_):
    torch.manual_seed(0)  # two Bottlenecks a stage: the first and the later blocks' rules both show
    ours = dilate_resnet(ResNet(Bottleneck, [2, 2, 2, 2]), os_).eval()
    ref = ResNet(Bottleneck, [2, 2, 2, 2], replace_stride_with_dilation=TORCHVISION[os_]).eval()
    assert conv_geometry(ours) == conv_geometry(ref)
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(1, 3, 48, 48)
    with torch.no_grad():
        assert torch.allclose(ours(x), ref(x), atol=1e-5)


@pytest.mark.parametrize("depth", [18, 34])
def test_basic_block_resnet_keeps_its_parameters_and_reaches_the_stride(depth):
    torch.manual_seed(1)
    plain = torchvision_resnet(depth, 0.25)
    before = {k: v.clone() for k, v in plain.state_dict().items()}
    geometry = conv_geometry(plain)
    for os_ in (8, 16):
        dilated = dilate_resnet(plain, os_).eval()
        state = dilated.state_dict()
        assert list(state) == list(before) and all(torch.equal(state[k], v) for k, v in before.items())
        assert layer4_side(dilated, 96) == 96 // os_
        changed = {n for n, g in conv_geometry(dilated).items() if g != geometry[n]}
        stages = ("layer3.", "layer4.") if os_ == 8 else ("layer4.",)
        assert changed and all(n.startswith(stages) for n in changed)
        # the first block of a dilated stage keeps the previous dilation; the later blocks get the stage's
        last = dilated.layer4[-1]
        assert (last.conv1.dilation, last.conv2.dilation) == (((4, 4),) * 2 if os_ == 8 else ((2, 2),) * 2)
        assert last.conv1.padding == last.conv1.dilation
    assert conv_geometry(plain) == geometry and layer4_side(plain.eval(), 96) == 3  # the input is not modified


def test_refuses_other_strides():
    with pytest.raises(TicketlabError, match="model.segmentation.output_stride: expected 8, 16 or 32, got 4"):
        dilate_resnet(torchvision_resnet(18, 0.25), 4)
