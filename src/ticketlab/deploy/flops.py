"""Multiply-accumulates a model spends in its convolutions and linear layers, over the weights that remain.

A pruned weight is still multiplied by a dense kernel, so "FLOPs of a ticket" means two different
things: what a dense runtime spends (every weight of every layer, whatever its value) and what the
weights that remain would cost a runtime that skipped zeros. This counts both, from one forward pass:
each `nn.Conv2d` and `nn.Linear` spends, per output position, one multiply-accumulate per weight of
the filter it applies, so

    MACs = (weights of the layer) × (output elements ÷ output channels)

with "weights" all of them (`dense`) or the nonzero ones (`remaining`). A grouped conv's weight tensor
already holds only the inputs each filter reads, so the same formula holds. Norms, activations, pools,
additions and the bias are not counted (they are a few % of a ResNet and no pruning touches them),
the convention of torchvision's model metadata (its ResNet-18 "GFLOPS" 1.814 at 224×224 is this
MAC count). FLOPs ≈ 2 × MACs. A compacted model's layers are dense, so its two counts agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn


@dataclass
class MacCount:
    dense: int = 0        # every weight of every conv/linear, times its output positions
    remaining: int = 0    # the same over the nonzero weights only
    layers: dict[str, tuple[int, int]] = field(default_factory=dict)  # module path → (dense, remaining)


def count_macs(model: nn.Module, example: Any) -> MacCount:
    """Run `model(example)` once (no grad) and count the MACs of every conv/linear call in it; a layer
    called several times (a shared head on each FPN level) counts every call."""
    count = MacCount()
    handles = []

    def hook(path: str):
        def on_output(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            channels = output.shape[1] if isinstance(module, nn.Conv2d) else output.shape[-1]
            positions = output.numel() // channels
            w = module.weight.detach()
            dense, remaining = w.numel() * positions, int(torch.count_nonzero(w)) * positions
            count.dense += dense
            count.remaining += remaining
            d, r = count.layers.get(path, (0, 0))
            count.layers[path] = (d + dense, r + remaining)
        return on_output

    for path, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            handles.append(m.register_forward_hook(hook(path)))
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in handles:
            h.remove()
    return count
