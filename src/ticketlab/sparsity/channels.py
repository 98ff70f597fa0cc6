"""Channel masks (`prune.granularity: channel`): whole output channels removed, coupled ones together.

A *channel group* (found by `coupling.py` with Torch-Pruning's dependency graph) is a set of
channels that must go together for the network to stay valid: a conv's output channels and the
BatchNorm after it; every conv writing into one residual stream (a ResNet stage's conv2s / conv3s,
its downsample and, for layer1, the stem); the layers reading them. Channel *unit* u of a group is
one channel of all of them at once. In the per-weight mask a removed unit is

- the output rows of every masked weight that produces it (`rows`), and
- the input columns of every masked weight that reads it (`columns`),

so a channel mask is an ordinary mask whose rows are all-or-nothing, stored in the same file.
Outside the mask, its per-channel tensors (`held`: the BatchNorm γ and β, conv/linear biases) are
held at exactly 0 while it is removed (`held_masks`): the channel then outputs 0 after its norm, as
it does not exist in the physically compacted model, so the two compute the same function (a
zero filter alone would output the norm's β − γμ/σ). Running statistics are left as they are;
γ = 0 multiplies them away.

Pure functions on masks, scores and group descriptions; inputs are never modified.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional

import torch

from ticketlab.errors import TicketlabError
from ticketlab.sparsity.ranking import keep_top, level_keep
from ticketlab.sparsity.strategies import prune_random

Mask = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Coupled:
    """Where one tensor meets a group: along `dim`, position index[i] carries channel unit unit[i]
    (several positions per unit after a flatten); `extent` is the tensor's size along `dim`."""

    param: str
    dim: int
    index: torch.Tensor
    unit: torch.Tensor
    extent: int


@dataclass(frozen=True)
class ChannelGroup:
    name: str  # the root layer's weight (how reports and ties name the group)
    size: int  # channel units
    rows: tuple[Coupled, ...]  # masked weights producing the channels (scored; output rows removed)
    columns: tuple[Coupled, ...]  # masked weights reading them (input columns removed with them)
    held: tuple[Coupled, ...]  # per-channel norm γ/β and biases, held at 0 for a removed unit
    gammas: tuple[Coupled, ...]  # the BatchNorm γ among `held` (channel_score bn_gamma)


def _per_position(t: torch.Tensor, c: Coupled) -> torch.Tensor:
    """t's slices along c.dim at c.index, flattened: [positions, rest]."""
    moved = t.detach().movedim(c.dim, 0)
    return moved.reshape(moved.shape[0], -1)[c.index.to(t.device)]


def _per_unit_sum(values: torch.Tensor, c: Coupled, size: int) -> torch.Tensor:
    return torch.zeros(size, dtype=values.dtype).index_add_(0, c.unit, values.cpu())


def alive_units(mask: Mapping[str, torch.Tensor], groups: list[ChannelGroup]) -> Mask:
    """Per group, which units are alive: some weight of their output rows is still kept."""
    out: Mask = {}
    for g in groups:
        count = torch.zeros(g.size, dtype=torch.long)
        for c in g.rows:
            count += _per_unit_sum(_per_position(mask[c.param], c).any(1).long(), c, g.size)
        out[g.name] = count > 0
    return out


def unit_scores(state: Mapping[str, torch.Tensor], groups: list[ChannelGroup], score: str,
                alive: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Per group, each unit's score (float64): `l1`, the L1 norm of its filters (averaged over the
    coupled output rows); `bn_gamma`, the mean |γ| of its BatchNorms (You et al. 2020). Each is
    divided by the mean over the group's alive units (Torch-Pruning's "mean" normaliser), so a global
    ranking compares a channel with the rest of its own layer: raw norms grow with fan-in (and
    per-weight magnitudes shrink with it), which would empty the narrowest (or widest) layers first."""
    out = {}
    for g in groups:
        members = g.rows if score == "l1" else g.gammas
        if not members:
            raise TicketlabError(f"prune.channel_score bn_gamma: the channels of {g.name} have no BatchNorm after "
                                 "them; use channel_score l1 or keep the layer out of prune.scope")
        total = torch.zeros(g.size, dtype=torch.float64)
        count = torch.zeros(g.size, dtype=torch.float64)
        for c in members:
            block = _per_position(state[c.param], c).abs().double()
            total += _per_unit_sum(block.sum(1), c, g.size)
            count += _per_unit_sum(torch.ones(block.shape[0], dtype=torch.float64), c, g.size)
        raw = total / count
        live = alive[g.name].cpu()
        mean = raw[live].mean() if bool(live.any()) else raw.new_tensor(0.0)
        out[g.name] = raw / mean if float(mean) > 0 else raw
    return out


def prune_units(alive: Mapping[str, torch.Tensor], scores: Optional[Mapping[str, torch.Tensor]], rate: float, *,
                layerwise: bool, generator: Optional[torch.Generator] = None, keep_high: bool = True) -> Mask:
    """Remove round(rate × alive units), over all groups (`layerwise=False`) or per group, by score —
    the lowest (`keep_high`) or the highest — or, with `scores=None`, uniformly at random per group."""
    if scores is None:
        if generator is None:
            raise TicketlabError("prune.strategy random: needs a torch.Generator (seeded from train.seed)")
        return prune_random(alive, rate, generator)
    return keep_top(scores, alive, level_keep(alive, rate, 1, layerwise=layerwise), keep_high=keep_high)


def _dead_positions(c: Coupled, dead: torch.Tensor) -> torch.Tensor:
    return c.index[dead[c.unit]]


def apply_units(mask: Mapping[str, torch.Tensor], groups: list[ChannelGroup], alive: Mapping[str, torch.Tensor]) -> Mask:
    """`mask` with every weight of every dead unit (its output rows and input columns) pruned; weights
    of alive units keep their entries."""
    out = {n: m.clone() for n, m in mask.items()}
    for g in groups:
        dead = ~alive[g.name].cpu()
        if not bool(dead.any()):
            continue
        for c in (*g.rows, *g.columns):
            if c.param in out:
                out[c.param].index_fill_(c.dim, _dead_positions(c, dead).to(out[c.param].device), False)
    return out


def held_masks(groups: list[ChannelGroup], alive: Mapping[str, torch.Tensor]) -> Mask:
    """The norm γ/β and biases a dead unit holds at 0, as masks over those 1-d tensors (True = free)."""
    out: Mask = {}
    for g in groups:
        dead = ~alive[g.name].cpu()
        for c in g.held:
            m = out.setdefault(c.param, torch.ones(c.extent, dtype=torch.bool))
            m[_dead_positions(c, dead)] = False
    return out


def kept_rows(m: torch.Tensor) -> tuple[int, int]:
    """(output channels with some weight kept, output channels) of a conv/linear weight's mask: a
    channel ticket's channel count of the layer (any mask's, for the reports)."""
    total = int(m.shape[0]) if m.dim() else 1
    if m.numel() == 0:
        return 0, total
    return int(torch.count_nonzero(m.reshape(total, -1).any(1))), total
