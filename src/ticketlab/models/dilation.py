"""DeepLab's output stride for a built torchvision ResNet: layer3/layer4 trade their stride for dilation.

Why a function after construction: torchvision dilates only while building a ResNet
(`replace_stride_with_dilation`), and its BasicBlock refuses dilation outright, so ResNet-18/34 —
paper 002's CPU-scale trunk — could not run DeepLabv3+ at its output stride 16. Dilation changes
only conv attributes (stride, dilation, padding), never a parameter's name, shape or initial value,
so the dilated trunk keeps every state_dict key of the classifier, SimCLR or MoCo ResNet it came
from, and tickets and checkpoints move between them unchanged.

The rule is torchvision's `_make_layer` for Bottleneck ResNets, applied to BasicBlocks too: in each
dilated stage the strided convs (the first block's strided 3×3 and its 1×1 downsample) get stride 1;
the stage's dilation is the previous stage's × 2; the first block's 3×3 convs keep the previous
stage's dilation, the later blocks' get the stage's; padding = dilation, so the spatial size is
kept. A BasicBlock has two 3×3 convs (both dilated), a Bottleneck one.
"""

from __future__ import annotations

import copy

from torch import nn
from torchvision.models import ResNet

from ticketlab.errors import TicketlabError

STAGES = ("layer2", "layer3", "layer4")  # the stride-2 stages
DILATED = {8: 2, 16: 1, 32: 0}  # output stride → how many of the last stages are dilated


def _atrous(conv: nn.Conv2d, dilation: int) -> None:
    if conv.kernel_size == (3, 3):
        conv.dilation, conv.padding = (dilation, dilation), (dilation, dilation)


def dilate_resnet(resnet: ResNet, output_stride: int) -> ResNet:
    """A copy of `resnet` (any block type, any width) whose layer4 output is 1/`output_stride` of the input."""
    if output_stride not in DILATED:
        raise TicketlabError(f"model.segmentation.output_stride: expected 8, 16 or 32, got {output_stride}")
    dilated = copy.deepcopy(resnet)
    previous = 1
    for name in STAGES[len(STAGES) - DILATED[output_stride]:]:
        stage, current = getattr(dilated, name), previous * 2
        for index, block in enumerate(stage):
            block.stride = 1
            for module in block.modules():
                if isinstance(module, nn.Conv2d):
                    module.stride = (1, 1)  # only the first block's strided conv and downsample had 2
                    _atrous(module, previous if index == 0 else current)
        previous = current
    return dilated
