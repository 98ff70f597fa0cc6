"""Per-group pruning rates (`prune.rates`): the lottery-ticket paper pruned LeNet-300-100's hidden
layers 20% per level and its output layer 10%, Conv-2/4/6's convs 10–15% and FC layers 20%.

The scope is split into *pools*: one per module group named in `rates`, at that group's rate, and
one for every other scope tensor, at `prune.rate`. Each pool is pruned by itself with the run's
strategy, so its count removed per level is exact:

- `global`: a pool's round(rate_g × alive_g) smallest-|w| weights over the pool's tensors (a named
  group is ranked within itself, the rest of the scope over the rest);
- `layerwise` and `random`: round(rate_g × alive_t) of each tensor t of the pool.

After k levels a pool therefore keeps n_k weights, n_{j+1} = n_j − round(rate_g × n_j) (per tensor
for layerwise/random), ≈ (1 − rate_g)^k of them. With no `rates` there is one pool, the scope, and
the result is exactly that of `strategies.prune`.
"""

from __future__ import annotations

from typing import Mapping, Optional

import torch

from ticketlab.errors import TicketlabError
from ticketlab.sparsity.strategies import Mask, prune

REST = ""  # the pool of scope tensors in no named group


def rate_pools(names: list[str], group_of: Mapping[str, Optional[str]], rates: Mapping[str, float],
               rate: float) -> list[tuple[float, list[str]]]:
    """(rate, tensor names) per pool: the named groups in `rates` order, then the rest; empty pools
    are dropped. A group in `rates` that holds no tensor of `names` is an error (a typo)."""
    pools: dict[str, list[str]] = {g: [] for g in rates}
    pools[REST] = []
    for n in names:
        g = group_of.get(n)
        pools[g if g in rates else REST].append(n)
    empty = [g for g in rates if not pools[g]]
    if empty:
        raise TicketlabError(f"prune.rates: group {empty[0]!r} holds no weight of the pruning scope")
    return [(rates.get(g, rate), pool) for g, pool in pools.items() if pool]


def prune_by_groups(strategy: str, weights: Mapping[str, torch.Tensor], mask: Mapping[str, torch.Tensor],
                    rate: float, rates: Mapping[str, float], group_of: Mapping[str, Optional[str]],
                    generator: Optional[torch.Generator] = None) -> Mask:
    """One pruning level with a rate per pool (see the module docstring); `group_of` maps each
    tensor name of `mask` to its module group (or None)."""
    out: Mask = {}
    for pool_rate, names in rate_pools(list(mask), group_of, rates, rate):
        out.update(prune(strategy, {n: weights[n] for n in names if n in weights},
                         {n: mask[n] for n in names}, pool_rate, generator))
    return {n: out[n] for n in mask}
