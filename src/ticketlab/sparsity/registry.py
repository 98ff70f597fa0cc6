"""Every pruning strategy `prune.strategy` can name, and what choosing it means.

Two families:
- **IMP** (`at_init=False`): level k prunes round(rate × alive) of level k-1's alive weights, ranked
  by the magnitude of level k-1's *trained* weights (`global`, `layerwise`) or at random
  (`random`), see `strategies.py`.
- **Pruning at initialisation** (`at_init=True`): level k's mask is chosen afresh from level 0's
  mask, by a saliency score of the weights the levels start from (`saliency.py`), keeping
  exactly as many weights as the IMP level k would (`ranking.level_keep`), so both families share
  one sparsity axis. SNIP and GraSP are one-shot; SynFlow prunes in `prune.synflow_iterations`
  rounds (100 in Tanaka et al.) on an exponential schedule, rescoring the masked network each
  round. `*_layerwise` ranks within each tensor, the others over the whole scope.

`keep_high` says which end of the ranking is kept: GraSP removes the weights of largest
S = −w ⊙ Hg, every other score keeps its largest values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import torch

from ticketlab.errors import TicketlabError
from ticketlab.sparsity.ranking import exponential_keep, keep_top
from ticketlab.sparsity.saliency import SCORE_FUNCTIONS, ScoreInputs, Scores

Mask = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Strategy:
    name: str
    score: str            # magnitude, random, or a key of saliency.SCORE_FUNCTIONS
    layerwise: bool       # counts per tensor (True) or over the whole scope
    at_init: bool = False
    keep_high: bool = True
    iterative: bool = False  # SynFlow: prune.synflow_iterations rounds
    label: str = ""       # how reports name the method


def _at_init(score: str, label: str, **kw) -> list[Strategy]:
    return [Strategy(score, score, False, True, label=label, **kw),
            Strategy(f"{score}_layerwise", score, True, True, label=f"{label} (layer-wise)", **kw)]


STRATEGY_LIST = [
    Strategy("global", "magnitude", False, label="IMP"),
    Strategy("layerwise", "magnitude", True, label="IMP (layer-wise)"),
    Strategy("random", "random", True, label="random pruning"),
    *_at_init("snip", "SNIP"),
    *_at_init("grasp", "GraSP", keep_high=False),
    *_at_init("synflow", "SynFlow", iterative=True),
]
REGISTRY: dict[str, Strategy] = {s.name: s for s in STRATEGY_LIST}


def get_strategy(name: str) -> Strategy:
    if name not in REGISTRY:
        raise TicketlabError(f"prune.strategy: {name!r} is not one of {', '.join(REGISTRY)}")
    return REGISTRY[name]


def prune_at_init(strategy: Strategy, inputs: ScoreInputs, mask: Mapping[str, torch.Tensor],
                  keep: int | Mapping[str, int], *, iterations: int = 1, invert: bool = False,
                  on_round: Callable[[int, Mask], None] | None = None) -> Mask:
    """The mask `strategy` keeps out of `mask` (`keep` weights, total or per tensor), scoring
    `inputs.model` with the mask applied; `iterations` rounds on the exponential schedule when the
    strategy is iterative. `invert` keeps the other end of every ranking (Frankle et al. 2021)."""
    if not strategy.at_init:
        raise TicketlabError(f"prune.strategy {strategy.name}: not a pruning-at-init strategy")
    score_fn = SCORE_FUNCTIONS[strategy.score]
    rounds = iterations if strategy.iterative else 1
    start = {n: m.clone() for n, m in mask.items()}
    alive = ({n: int(m.count_nonzero()) for n, m in start.items()} if isinstance(keep, Mapping)
             else sum(int(m.count_nonzero()) for m in start.values()))
    current: Mask = start
    for j in range(1, rounds + 1):
        scores: Scores = score_fn(inputs, current)
        if isinstance(keep, Mapping):
            step: int | dict[str, int] = {n: exponential_keep(alive[n], keep[n], j, rounds) for n in current}
        else:
            step = exponential_keep(alive, keep, j, rounds)
        current = keep_top(scores, current, step, keep_high=strategy.keep_high != invert)
        if on_round is not None:
            on_round(j, current)
    return current
