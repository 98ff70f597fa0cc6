"""What one pruning decision removes (`prune.granularity`): a weight, a channel, or N:M patterns.

Each granularity answers the same questions, so IMP (`lottery/imp.py`) and the controls
(`lottery/branches.py`) ask them without knowing which one runs:

- `next_mask`: level k's mask from level k-1's trained state and mask (the strategy's counts);
- `random_like`, `complement`, `perturb`, `inverted`: the controls, in the granularity's own units
  (`inverted`: level k's selection with the ranking reversed, the same counts removed);
- `held`: the tensors outside the mask kept at 0 with it (a removed channel's norm γ/β, biases);
- `units`: per channel group, which channels are alive (empty unless the granularity is channel),
  for compaction and the per-layer channel counts of reports.

Weight: the papers' IMP (strategies.py, group_rates.py). Channel: units of coupled channels
(channels.py), counted like weights are — round(rate × alive units) per level over every prunable
group (`global`) or per group (`layerwise`, `random`). N:M: level 1 keeps the N largest of every M
(nm.py); the selection is idempotent, so pruning stops there and later levels retrain that mask.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Collection, Mapping, Optional

import torch

from ticketlab.config import parse_nm
from ticketlab.errors import TicketlabError
from ticketlab.registry import STRATEGIES
from ticketlab.sparsity import channels, nm
from ticketlab.sparsity.group_rates import prune_by_groups
from ticketlab.sparsity.ranking import keep_top, level_keep
from ticketlab.sparsity.strategies import Mask, Strategy, complement, perturb, random_mask_like


class WeightGranularity:
    """Single weights: the existing strategies, unchanged."""

    def next_mask(self, strategy: str, state: Mapping[str, torch.Tensor], mask: Mapping[str, torch.Tensor],
                  rate: float, rates: Mapping[str, float], group_of: Mapping[str, Optional[str]],
                  generator: Optional[torch.Generator]) -> Mask:
        return prune_by_groups(strategy, {n: state[n] for n in mask}, mask, rate, rates, group_of, generator)

    def inverted(self, state: Mapping[str, torch.Tensor], mask: Mapping[str, torch.Tensor], rate: float,
                 layerwise: bool) -> Mask:
        return keep_top({n: state[n].abs() for n in mask}, mask, level_keep(mask, rate, 1, layerwise=layerwise),
                        keep_high=False)

    def random_like(self, mask: Mapping[str, torch.Tensor], generator: torch.Generator) -> Mask:
        return random_mask_like(mask, generator)

    def complement(self, mask: Mapping[str, torch.Tensor]) -> Mask:
        return complement(mask)

    def perturb(self, mask: Mapping[str, torch.Tensor], fraction: float, generator: torch.Generator) -> Mask:
        return perturb(mask, fraction, generator)

    def held(self, mask: Mapping[str, torch.Tensor]) -> Mask:
        return {}

    def units(self, mask: Mapping[str, torch.Tensor]) -> Mask:
        return {}


@dataclass(frozen=True)
class ChannelGranularity:
    """Coupled output channels; controls act on the units of the prunable groups and rebuild the mask
    from them (a unit's rows and columns all kept or all pruned); tensors no group covers keep theirs."""

    groups: tuple[channels.ChannelGroup, ...]
    score: str = "l1"

    def _rebuild(self, mask: Mapping[str, torch.Tensor], alive: Mapping[str, torch.Tensor]) -> Mask:
        base = dict(mask)
        for g in self.groups:
            for c in (*g.rows, *g.columns):
                if c.param in base:
                    base[c.param] = torch.ones_like(base[c.param])
        return channels.apply_units(base, list(self.groups), alive)

    def units(self, mask: Mapping[str, torch.Tensor]) -> Mask:
        return channels.alive_units(mask, list(self.groups))

    def next_mask(self, strategy: str, state: Mapping[str, torch.Tensor], mask: Mapping[str, torch.Tensor],
                  rate: float, rates: Mapping[str, float], group_of: Mapping[str, Optional[str]],
                  generator: Optional[torch.Generator]) -> Mask:
        entry: Strategy = STRATEGIES.get(strategy)
        alive = self.units(mask)
        scores = None if entry.score == "random" else channels.unit_scores(state, list(self.groups), self.score, alive)
        alive = channels.prune_units(alive, scores, rate, layerwise=entry.layerwise, generator=generator)
        return channels.apply_units(mask, list(self.groups), alive)

    def inverted(self, state: Mapping[str, torch.Tensor], mask: Mapping[str, torch.Tensor], rate: float,
                 layerwise: bool) -> Mask:
        alive = self.units(mask)
        scores = channels.unit_scores(state, list(self.groups), self.score, alive)
        kept = channels.prune_units(alive, scores, rate, layerwise=layerwise, keep_high=False)
        return channels.apply_units(mask, list(self.groups), kept)

    def random_like(self, mask: Mapping[str, torch.Tensor], generator: torch.Generator) -> Mask:
        return self._rebuild(mask, random_mask_like(self.units(mask), generator))

    def complement(self, mask: Mapping[str, torch.Tensor]) -> Mask:
        return self._rebuild(mask, complement(self.units(mask)))

    def perturb(self, mask: Mapping[str, torch.Tensor], fraction: float, generator: torch.Generator) -> Mask:
        return self._rebuild(mask, perturb(self.units(mask), fraction, generator))

    def held(self, mask: Mapping[str, torch.Tensor]) -> Mask:
        return channels.held_masks(list(self.groups), self.units(mask))


@dataclass(frozen=True)
class NMGranularity:
    """N of every M consecutive weights of a row (nm.py)."""

    n: int
    m: int

    def next_mask(self, strategy: str, state: Mapping[str, torch.Tensor], mask: Mapping[str, torch.Tensor],
                  rate: float, rates: Mapping[str, float], group_of: Mapping[str, Optional[str]],
                  generator: Optional[torch.Generator]) -> Mask:
        if STRATEGIES.get(strategy).score == "random":  # random scores: n random alive weights per group
            if generator is None:
                raise TicketlabError("prune.strategy random: needs a torch.Generator (seeded from train.seed)")
            state = {n: torch.rand(mask[n].shape, generator=generator, device=generator.device) for n in sorted(mask)}
        return nm.nm_mask(state, mask, self.n, self.m)

    def inverted(self, state: Mapping[str, torch.Tensor], mask: Mapping[str, torch.Tensor], rate: float,
                 layerwise: bool) -> Mask:
        return nm.nm_mask(state, mask, self.n, self.m, keep_high=False)

    def random_like(self, mask: Mapping[str, torch.Tensor], generator: torch.Generator) -> Mask:
        return nm.random_nm_like(mask, self.m, generator)

    def complement(self, mask: Mapping[str, torch.Tensor]) -> Mask:
        return nm.complement_nm(mask, self.m)

    def perturb(self, mask: Mapping[str, torch.Tensor], fraction: float, generator: torch.Generator) -> Mask:
        return nm.perturb_nm(mask, fraction, self.m, generator)

    def held(self, mask: Mapping[str, torch.Tensor]) -> Mask:
        return {}

    def units(self, mask: Mapping[str, torch.Tensor]) -> Mask:
        return {}


Granularity = WeightGranularity | ChannelGranularity | NMGranularity


def build_granularity(granularity: str, channel_score: str, model: torch.nn.Module, example: Any,
                      prunable: Collection[str]) -> Granularity:
    """The granularity a config names; `channel` traces `model` (a copy) on `example` for its groups."""
    pair = parse_nm(granularity)
    if pair is not None:
        return NMGranularity(*pair)
    if granularity == "weight":
        return WeightGranularity()
    from ticketlab.sparsity.coupling import channel_groups  # Torch-Pruning is imported only when needed

    groups = channel_groups(model, example, prunable)
    if not groups:
        raise TicketlabError("prune.granularity channel: no channel in prune.scope can be removed (every "
                             "conv/linear there feeds the model's outputs or is coupled to a layer outside it)")
    no_norm = [g.name for g in groups if channel_score == "bn_gamma" and not g.gammas]
    if no_norm:
        raise TicketlabError(f"prune.channel_score bn_gamma: the channels of {no_norm[0]} have no BatchNorm after "
                             "them; use channel_score l1 or keep the layer out of prune.scope")
    return ChannelGranularity(tuple(groups), channel_score)
