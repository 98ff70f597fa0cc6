"""N:M masks (`prune.granularity: N:M`, e.g. 2:4): in every group of M consecutive weights of a row,
at most N are kept — the pattern NVIDIA's sparse tensor cores (and PyTorch's semi-structured sparse
tensors) multiply at up to twice the dense speed for 2:4.

A row is one output unit's weights in row-major order, `weight.reshape(out, -1)`: a linear layer's
input dimension, a conv's (in_channels, kh, kw) — the layout of the conv's im2col matrix, so a conv
ticket runs as `unfold` + a semi-structured matmul without reordering. Groups never straddle rows.
A tensor whose row length is not a multiple of M (a ResNet stem's 3·7·7 = 147) is not covered: its
mask is left as it is (dense in a ticket), and every function here leaves it alone.

Pure functions of masks (`dict[str, BoolTensor]`, True = kept); inputs are never modified. Ties
among equal magnitudes keep the weight with the lower index in its group.
"""

from __future__ import annotations

from typing import Callable, Mapping

import torch

from ticketlab.errors import TicketlabError

Mask = dict[str, torch.Tensor]


def covered(shape: tuple[int, ...] | torch.Size, m: int) -> bool:
    """Whether a tensor of this shape is split into N:M groups (rows of a multiple of M weights)."""
    return len(shape) >= 2 and (int(torch.Size(shape).numel()) // shape[0]) % m == 0


def _groups(t: torch.Tensor, m: int) -> torch.Tensor:
    return t.reshape(-1, m)


def _keep_first(order: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Bool [G, M]: True at the first counts[g] positions of row g's `order` (column indices)."""
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order).contiguous())
    return ranks < counts.unsqueeze(1)


def _each_covered(mask: Mapping[str, torch.Tensor], m: int,
                  new_groups: Callable[[str, torch.Tensor], torch.Tensor]) -> Mask:
    """`new_groups(name, groups [G, M])` for every covered tensor, visited in name order (so random
    draws do not depend on how the dict was built); the other tensors copied. Input order kept."""
    out: Mask = {}
    for name in sorted(mask):
        keep = mask[name]
        out[name] = new_groups(name, _groups(keep, m)).view(keep.shape) if covered(keep.shape, m) else keep.clone()
    return {name: out[name] for name in mask}


def nm_mask(weights: Mapping[str, torch.Tensor], mask: Mapping[str, torch.Tensor], n: int, m: int, *,
            keep_high: bool = True) -> Mask:
    """Keep the n largest-|w| alive weights of every group of m (fewer when fewer are alive); the n
    smallest with `keep_high=False` (the `invert` control)."""
    def keep_n(name: str, alive: torch.Tensor) -> torch.Tensor:
        magnitude = _groups(weights[name].detach().to(alive.device), m).abs().double()
        score = torch.where(alive, magnitude if keep_high else -magnitude, -torch.inf)
        if bool(torch.isnan(score).any()):
            raise TicketlabError(f"N:M pruning: NaN in kept weights of {name}; the model has diverged")
        order = torch.sort(score, dim=1, descending=True, stable=True).indices
        return _keep_first(order, torch.full_like(alive[:, 0], n, dtype=torch.long)) & alive

    return _each_covered(mask, m, keep_n)


def _random_keys(shape: torch.Size, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.rand(tuple(shape), generator=generator, device=generator.device).to(device)


def random_nm_like(mask: Mapping[str, torch.Tensor], m: int, generator: torch.Generator) -> Mask:
    """Each group's kept count at uniformly random positions within the group (tensors in name order)."""
    def shuffle(name: str, g: torch.Tensor) -> torch.Tensor:
        order = torch.sort(_random_keys(g.shape, generator, g.device), dim=1, stable=True).indices
        return _keep_first(order, g.sum(1))

    return _each_covered(mask, m, shuffle)


def complement_nm(mask: Mapping[str, torch.Tensor], m: int) -> Mask:
    """Within every group the pruned weights kept and the kept ones pruned: an N:M ticket's complement is
    an (M−N):M mask. Tensors outside the pattern keep their mask (N:M never pruned them)."""
    return _each_covered(mask, m, lambda name, g: ~g)


def perturb_nm(mask: Mapping[str, torch.Tensor], fraction: float, m: int, generator: torch.Generator) -> Mask:
    """Swap round(fraction × kept) kept weights of each tensor with pruned ones of the same group, so
    every group keeps its count. The kept ones are drawn uniformly; a group holding more of them than
    it has pruned weights swaps as many as it can (so a little fewer may move)."""
    def swap(name: str, g: torch.Tensor) -> torch.Tensor:
        flat = g.reshape(-1)
        kept = flat.nonzero().squeeze(1)
        pick = torch.randperm(kept.numel(), generator=generator, device=generator.device).to(g.device)
        chosen = torch.zeros_like(flat)
        chosen[kept[pick[:round(fraction * kept.numel())]]] = True
        chosen = chosen.view_as(g)
        swaps = torch.minimum(chosen.sum(1), (~g).sum(1))
        keys = _random_keys(g.shape, generator, g.device)
        off = _keep_first(torch.sort(torch.where(chosen, keys, 2.0), dim=1, stable=True).indices, swaps)
        on = _keep_first(torch.sort(torch.where(~g, keys, 2.0), dim=1, stable=True).indices, swaps)
        return (g & ~off) | on

    return _each_covered(mask, m, swap)


def group_counts(mask: torch.Tensor, m: int) -> torch.Tensor:
    """Kept weights in each group of m (a covered tensor's mask), shape [groups]."""
    return _groups(mask, m).sum(1)
