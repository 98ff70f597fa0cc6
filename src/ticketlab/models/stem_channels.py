"""An RGB-pretrained first conv for a one-channel model (paper 002's Fashion-MNIST downstream task).

Paper 002 transfers ImageNet ResNet-50 tickets to Fashion-MNIST, whose images have one channel;
ticketlab builds that model with a 1-channel conv1. A pretrained conv1 of shape (out, 3, k, k) is
loaded into it as its sum over the three input channels, (out, 1, k, k). That is exact, not an
approximation of the RGB model: conv(w, [x, x, x]) = conv(w_R + w_G + w_B, x), so the 1-channel
model computes what the RGB model computes on the gray image copied into all three channels (after
the 1-channel normalisation the data uses, FASHION_MNIST_STATS, instead of ImageNet's per-channel
one). It is the common choice (e.g. timm's `adapt_input_conv` for one channel). `init.json` lists
every adapted key under `weights.adapted`.

A transferred mask (or ticket) of an RGB conv1 adapts the same way, so that the 1-channel ticket still
computes what the RGB ticket computes on the gray image: a kernel position of the 1-channel conv1 is
kept iff it is kept in ANY of the three channels, and a ticket's value there is the sum of the RGB
values the source mask keeps, sum_c m_c * w_c. That is the only mask under which the summed ticket is
exact (conv(m ⊙ w, [x, x, x]) = conv(sum_c m_c ⊙ w_c, x)): keeping a position only where all three
channels are kept would drop weights the RGB ticket uses; choosing by the summed weight's magnitude
would drop or add weights by a criterion the source IMP never applied. The price: the adapted conv1
is less sparse than the RGB one (a position is pruned only where all three channels were).
`init.json` lists the adapted mask tensors under `transfer.adapted`.
"""

from __future__ import annotations

from typing import Optional

import torch

from ticketlab.errors import TicketlabError

RGB = 3
ADAPTED = "summed over 3 input channels (RGB) into 1"
ADAPTED_MASK = "kept where kept in any of 3 input channels (RGB); ticket values: sum of the kept RGB weights"


def stem_adapts(shape: tuple[int, ...], target_shape: tuple[int, ...]) -> bool:
    """Whether a conv weight of `shape` is an RGB one, (out, 3, k, k), that fits `target_shape`
    (out, 1, k, k) once its input channels are summed."""
    shape, target_shape = tuple(shape), tuple(target_shape)
    return (len(shape) == 4 and len(target_shape) == 4 and shape[1] == RGB and target_shape[1] == 1
            and (shape[0], *shape[2:]) == (target_shape[0], *target_shape[2:]))


def adapt_stem(weight: torch.Tensor, target_shape: tuple[int, ...]) -> Optional[torch.Tensor]:
    """`weight` (out, 3, k, k) summed over its input channels when `target_shape` is (out, 1, k, k);
    None when the shapes differ in any other way (the caller reports the mismatch)."""
    if not stem_adapts(tuple(weight.shape), target_shape):
        return None
    return weight.sum(dim=1, keepdim=True)


def adapt_stem_ticket(weight: torch.Tensor, mask: Optional[torch.Tensor], target_shape: tuple[int, ...],
                      where: str) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """A transferred RGB conv1, (out, 3, k, k), for a 1-channel conv1 of `target_shape`: its values
    summed over the RGB weights `mask` keeps, and the mask kept where kept in any channel (None when
    the source masks no conv1: then every weight is kept and summed). Shapes that cannot be adapted
    raise one TicketlabError naming `where` and both shapes."""
    for shape in (tuple(weight.shape), *(() if mask is None else (tuple(mask.shape),))):
        if not stem_adapts(shape, target_shape):
            raise TicketlabError(f"{where}: conv1 of shape {shape} does not fit this model's {tuple(target_shape)} "
                                 "(only an RGB conv1 (out, 3, k, k) adapts, to a 1-channel (out, 1, k, k))")
    if mask is None:
        return weight.sum(dim=1, keepdim=True), None
    kept = mask.bool()
    return (weight * kept.to(weight.dtype)).sum(dim=1, keepdim=True), kept.any(dim=1, keepdim=True)
