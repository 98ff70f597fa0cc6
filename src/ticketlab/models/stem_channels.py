"""An RGB-pretrained first conv for a one-channel model (paper 002's Fashion-MNIST downstream task).

Paper 002 transfers ImageNet ResNet-50 tickets to Fashion-MNIST, whose images have one channel;
ticketlab builds that model with a 1-channel conv1. A pretrained conv1 of shape (out, 3, k, k) is
loaded into it as its sum over the three input channels, (out, 1, k, k). That is exact, not an
approximation of the RGB model: conv(w, [x, x, x]) = conv(w_R + w_G + w_B, x), so the 1-channel
model computes what the RGB model computes on the gray image copied into all three channels (after
the 1-channel normalisation the data uses, FASHION_MNIST_STATS, instead of ImageNet's per-channel
one). It is the common choice (e.g. timm's `adapt_input_conv` for one channel). `init.json` lists
every adapted key under `weights.adapted`.
"""

from __future__ import annotations

from typing import Optional

import torch

RGB = 3
ADAPTED = "summed over 3 input channels (RGB) into 1"


def adapt_stem(weight: torch.Tensor, target_shape: tuple[int, ...]) -> Optional[torch.Tensor]:
    """`weight` (out, 3, k, k) summed over its input channels when `target_shape` is (out, 1, k, k);
    None when the shapes differ in any other way (the caller reports the mismatch)."""
    shape = tuple(weight.shape)
    if len(shape) != 4 or len(target_shape) != 4 or shape[1] != RGB or target_shape[1] != 1:
        return None
    if (shape[0], *shape[2:]) != (target_shape[0], *target_shape[2:]):
        return None
    return weight.sum(dim=1, keepdim=True)
