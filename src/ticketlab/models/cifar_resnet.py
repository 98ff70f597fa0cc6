"""ResNet-20/32/44/56/110 for 32-pixel images (He et al. 2016, §4.2), the LTH papers' CIFAR nets.

A 3×3 stem, then three stages of n BasicBlocks (depth = 6n + 2) with 16, 32, 64 (× width)
channels, the second and third starting with stride 2. When a block changes shape its shortcut
is a 1×1 convolution + BatchNorm (option B). Blocks are torchvision's `BasicBlock`, so module
names (conv1, bn1, layerK.I.conv1, …, downsample.0/1, fc) read like the ImageNet ResNets'.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, conv1x1

from ticketlab.errors import TicketlabError
from ticketlab.models.resnet import init_like_torchvision

CIFAR_RESNET_DEPTHS = (20, 32, 44, 56, 110)


class CifarResNet(nn.Module):
    """conv1 → bn1 → relu → layer1..3 → global average pool → fc."""

    def __init__(
        self,
        depth: int,
        width: float = 1.0,
        num_classes: int = 10,
        in_channels: int = 3,
        norm_layer: Optional[Callable[[int], nn.Module]] = None,
    ) -> None:
        super().__init__()
        if (depth - 2) % 6 != 0 or depth < 8:
            raise TicketlabError(f"cifar_resnet depth: expected 6n+2 (e.g. 20, 32, 56), got {depth!r}")
        if not width > 0:
            raise TicketlabError(f"model.width: expected a positive number, got {width!r}")
        norm_layer = norm_layer or nn.BatchNorm2d
        n = (depth - 2) // 6
        planes = [max(1, int(round(c * width))) for c in (16, 32, 64)]
        self._norm_layer = norm_layer
        self.inplanes = planes[0]
        self.conv1 = nn.Conv2d(in_channels, planes[0], kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = norm_layer(planes[0])
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_stage(planes[0], n, stride=1)
        self.layer2 = self._make_stage(planes[1], n, stride=2)
        self.layer3 = self._make_stage(planes[2], n, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(planes[2], num_classes)
        init_like_torchvision(self)  # so both ResNet kinds start alike

    def _make_stage(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        layers = []
        for i in range(blocks):
            s = stride if i == 0 else 1
            downsample = None
            if s != 1 or self.inplanes != planes:
                downsample = nn.Sequential(conv1x1(self.inplanes, planes, s), self._norm_layer(planes))
            layers.append(BasicBlock(self.inplanes, planes, s, downsample, norm_layer=self._norm_layer))
            self.inplanes = planes
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))
