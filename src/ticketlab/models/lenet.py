"""LeNet-300-100: the fully-connected MNIST network of the original lottery-ticket paper.

Flattened input → 300 → 100 → classes with ReLU. Named layer1, layer2, fc so that its groups
match the classifier vocabulary. Default PyTorch init (nn.Linear's).
"""

from __future__ import annotations

import torch
from torch import nn


class LeNet300100(nn.Module):
    def __init__(self, in_features: int, num_classes: int, hidden: tuple[int, int] = (300, 100)) -> None:
        super().__init__()
        self.layer1 = nn.Linear(in_features, hidden[0])
        self.layer2 = nn.Linear(hidden[0], hidden[1])
        self.fc = nn.Linear(hidden[1], num_classes)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(x, 1)
        x = self.relu(self.layer1(x))
        x = self.relu(self.layer2(x))
        return self.fc(x)
