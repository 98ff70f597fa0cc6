"""How a level chooses which weights to remove, and the mask controls of paper 002 §5.2.

Every function takes and returns masks (`dict[str, BoolTensor]`, True = kept) and never modifies
its inputs. Counts follow `torch.nn.utils.prune`: a call with rate p removes exactly
`round(p × remaining)` weights (Python's round, half to even), counted over the whole scope for
`global` and per tensor for `layerwise` and `random`. Only alive weights are scored; pruned weights
never come back. Magnitude ties are broken by parameter name (lexicographic), then row-major flat
index (see `select.py`). Random choices depend only on the generator's seed and device and
visit tensors in name order, so they do not depend on how the mask dict was built.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Optional

import torch

from ticketlab.errors import TicketlabError
from ticketlab.registry import STRATEGIES
from ticketlab.sparsity.select import kept_count, prune_smallest

Mask = dict[str, torch.Tensor]


def _check_rate(rate: float, what: str = "prune.rate") -> None:
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= rate <= 1.0:
        raise TicketlabError(f"{what}: expected a fraction in [0, 1], got {rate!r}")


def _check_mask(mask: Mapping[str, torch.Tensor]) -> None:
    for n, m in mask.items():
        if m.dtype != torch.bool:
            raise TicketlabError(f"mask[{n!r}]: expected a bool tensor, got {m.dtype}")


def _check_pair(weights: Mapping[str, torch.Tensor], mask: Mapping[str, torch.Tensor]) -> None:
    _check_mask(mask)
    missing = [n for n in mask if n not in weights]
    if missing:
        raise TicketlabError(f"mask names without weights: {', '.join(missing[:10])}")
    for n, m in mask.items():
        if tuple(weights[n].shape) != tuple(m.shape):
            raise TicketlabError(f"mask[{n!r}]: shape {tuple(m.shape)} does not match the weight's "
                                 f"{tuple(weights[n].shape)}")


def n_to_remove(rate: float, remaining: int) -> int:
    """round(rate × remaining), as torch.nn.utils.prune._compute_nparams_toprune."""
    return round(rate * remaining)


def full_mask(weights: Mapping[str, torch.Tensor]) -> Mask:
    """All-True masks shaped (and placed) like the weights: the dense level 0."""
    return {n: torch.ones(w.shape, dtype=torch.bool, device=w.device) for n, w in weights.items()}


def prune_global(weights: Mapping[str, torch.Tensor], mask: Mapping[str, torch.Tensor], rate: float) -> Mask:
    """Remove the round(rate × alive) smallest-|w| alive weights over the whole scope."""
    _check_rate(rate)
    _check_pair(weights, mask)
    alive = sum(kept_count(m) for m in mask.values())
    return prune_smallest({n: weights[n] for n in mask}, mask, n_to_remove(rate, alive), alive)


def prune_layerwise(weights: Mapping[str, torch.Tensor], mask: Mapping[str, torch.Tensor], rate: float) -> Mask:
    """Remove round(rate × alive_t) smallest-|w| alive weights of each tensor t separately."""
    _check_rate(rate)
    _check_pair(weights, mask)
    out: Mask = {}
    for n, m in mask.items():
        alive = kept_count(m)
        out[n] = prune_smallest({n: weights[n]}, {n: m}, n_to_remove(rate, alive), alive)[n]
    return out


def _random_indices(n: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """A random permutation of range(n), drawn on the generator's device, placed on `device`."""
    return torch.randperm(n, generator=generator, device=generator.device).to(device)


def prune_random(mask: Mapping[str, torch.Tensor], rate: float, generator: torch.Generator) -> Mask:
    """Remove round(rate × alive_t) alive weights of each tensor, chosen uniformly at random."""
    _check_rate(rate)
    _check_mask(mask)
    out: Mask = {}
    for n in sorted(mask):
        m = mask[n]
        alive = m.reshape(-1).nonzero().squeeze(1)
        k = n_to_remove(rate, alive.numel())
        new = m.clone()
        new.view(-1)[alive[_random_indices(alive.numel(), generator, m.device)[:k]]] = False
        out[n] = new
    return {n: out[n] for n in mask}


def random_mask_like(mask: Mapping[str, torch.Tensor], generator: torch.Generator) -> Mask:
    """Masks with the same kept count per tensor as `mask`, at uniformly random positions."""
    _check_mask(mask)
    out: Mask = {}
    for n in sorted(mask):
        m = mask[n]
        kept = kept_count(m)
        new = torch.zeros_like(m)
        new.view(-1)[_random_indices(m.numel(), generator, m.device)[:kept]] = True
        out[n] = new
    return {n: out[n] for n in mask}


def complement(mask: Mapping[str, torch.Tensor]) -> Mask:
    """The complementary mask m^c: kept ↔ pruned (paper 002 §5.2)."""
    _check_mask(mask)
    return {n: ~m for n, m in mask.items()}


def perturb(mask: Mapping[str, torch.Tensor], fraction: float, generator: torch.Generator) -> Mask:
    """Flip f = round(fraction × kept_t) kept entries to pruned and f pruned ones to kept, per tensor.

    The kept count (so the sparsity) of every tensor is unchanged. When a tensor has fewer than f
    pruned entries, f is capped at that number. Flipped positions are uniform at random among the
    kept and the pruned entries of the original mask (paper 002 §5.2, "m + Δm").
    """
    _check_rate(fraction, "perturb fraction")
    _check_mask(mask)
    out: Mask = {}
    for n in sorted(mask):
        m = mask[n]
        flat = m.reshape(-1)
        kept = flat.nonzero().squeeze(1)
        gone = (~flat).nonzero().squeeze(1)
        f = min(round(fraction * kept.numel()), gone.numel())
        new = m.clone()
        nf = new.view(-1)
        nf[kept[_random_indices(kept.numel(), generator, m.device)[:f]]] = False
        nf[gone[_random_indices(gone.numel(), generator, m.device)[:f]]] = True
        out[n] = new
    return {n: out[n] for n in mask}


def _prune_random(weights: Mapping[str, torch.Tensor], mask: Mapping[str, torch.Tensor], rate: float,
                  generator: torch.Generator | None) -> Mask:
    if generator is None:
        raise TicketlabError("prune.strategy random: needs a torch.Generator (seeded from train.seed)")
    _check_pair(weights, mask)
    return prune_random(mask, rate, generator)


PruneFn = Callable[[Mapping[str, torch.Tensor], Mapping[str, torch.Tensor], float, Optional[torch.Generator]], Mask]


@dataclass(frozen=True)
class Strategy:
    """What a `prune.strategy` name means (the STRATEGIES registry's entries).

    IMP strategies have `next_mask`: (level k-1's trained weights, its mask, rate, generator) →
    level k's mask. Pruning-at-init strategies (`pruning_at_init.py`) have none: they score the
    weights the levels start from, with the model and data the lottery layer hands them."""

    name: str
    label: str                 # how reports name the method
    score: str                 # magnitude, random, or a saliency score (saliency.SCORE_FUNCTIONS)
    layerwise: bool            # counts per tensor (True) or over the whole scope
    next_mask: Optional[PruneFn] = None
    at_init: bool = False
    keep_high: bool = True     # which end of the score ranking is kept
    iterative: bool = False    # SynFlow: prune.synflow_iterations rounds


for _strategy in (
    Strategy("global", "IMP", "magnitude", False, lambda w, m, rate, gen: prune_global(w, m, rate)),
    Strategy("layerwise", "IMP (layer-wise)", "magnitude", True, lambda w, m, rate, gen: prune_layerwise(w, m, rate)),
    Strategy("random", "random pruning", "random", True, _prune_random),
):
    STRATEGIES.register(_strategy.name, _strategy)


def prune(
    strategy: str,
    weights: Mapping[str, torch.Tensor],
    mask: Mapping[str, torch.Tensor],
    rate: float,
    generator: torch.Generator | None = None,
) -> Mask:
    """One pruning level with the named strategy (`global`, `layerwise`, `random`, … registered above)."""
    entry: Strategy = STRATEGIES.get(strategy)
    if entry.next_mask is None:
        raise TicketlabError(f"prune.strategy {strategy}: prunes at initialisation (scores the rewind point), "
                             "not from trained weights; use global, layerwise or random here")
    return entry.next_mask(weights, mask, rate, generator)
