"""Conv-2, Conv-4 and Conv-6: the CIFAR-10 conv nets of the lottery-ticket paper (Frankle & Carbin
2019, Fig. 2's table), scaled-down VGGs.

Conv-2: 64, 64, pool; Conv-4: 64, 64, pool, 128, 128, pool; Conv-6: + 256, 256, pool; every conv
3×3 with padding 1 and ReLU, pools 2×2 max; then fully-connected 256, 256 (ReLU) and the output
layer. No dropout (the paper's dropout experiments are a separate study). Default PyTorch init.

Module groups, the parts the paper prunes at different rates: `stem` (the first conv, a group in
every ticketlab model), `convs` (the other convs), `hidden` (the two 256-wide FC layers) and `fc`
(the output layer). On 32×32 RGB inputs the weight counts are 4.30M (Conv-2) and 2.42M (Conv-4),
the paper's 4.3M and 2.4M; Conv-6 has 2.26M here against the 1.7M the table gives, although the
layer list is the table's (the count does not follow from it).
"""

from __future__ import annotations

import torch
from torch import nn

PLANS: dict[int, tuple[int | str, ...]] = {
    2: (64, 64, "pool"),
    4: (64, 64, "pool", 128, 128, "pool"),
    6: (64, 64, "pool", 128, 128, "pool", 256, 256, "pool"),
}
HIDDEN = (256, 256)
GROUPS = {"stem": ("stem",), "convs": ("convs",), "hidden": ("hidden",), "fc": ("fc",)}


class ConvNet(nn.Module):
    def __init__(self, depth: int, in_channels: int, image_size: int, num_classes: int, width: float = 1.0) -> None:
        super().__init__()
        plan = [v if v == "pool" else max(1, int(round(int(v) * width))) for v in PLANS[depth]]
        first = int(plan[0])
        self.stem = nn.Conv2d(in_channels, first, 3, padding=1)
        layers: list[nn.Module] = [nn.ReLU()]
        channels, side = first, image_size
        for v in plan[1:]:
            if v == "pool":
                layers.append(nn.MaxPool2d(2))
                side //= 2
            else:
                layers += [nn.Conv2d(channels, int(v), 3, padding=1), nn.ReLU()]
                channels = int(v)
        self.convs = nn.Sequential(*layers)
        hidden = [max(1, int(round(h * width))) for h in HIDDEN]
        self.hidden = nn.Sequential(nn.Linear(channels * side * side, hidden[0]), nn.ReLU(),
                                    nn.Linear(hidden[0], hidden[1]), nn.ReLU())
        self.fc = nn.Linear(hidden[1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.convs(self.stem(x))
        return self.fc(self.hidden(torch.flatten(x, 1)))
