"""Pruning at initialisation as `prune.strategy`: SNIP, GraSP, SynFlow, each global or layer-wise.

IMP (`strategies.py`) prunes level k from level k-1's *trained* weights. These strategies choose
level k's mask afresh from level 0's mask, by a saliency score of the weights every level starts
from (`saliency.py`), keeping exactly as many weights as IMP's level k would
(`ranking.level_keep`), so both families share one sparsity axis. SNIP and GraSP are one-shot;
SynFlow prunes in `prune.synflow_iterations` rounds (100 in Tanaka et al.) on an exponential
schedule, rescoring the masked network each round. `*_layerwise` ranks within each tensor, the
others over the whole scope. GraSP removes the weights of largest S = −w ⊙ Hg (`keep_high=False`);
every other score keeps its largest values.
"""

from __future__ import annotations

from typing import Callable, Mapping

import torch

from ticketlab.registry import STRATEGIES
from ticketlab.sparsity.ranking import exponential_keep, keep_top
from ticketlab.sparsity.saliency import SCORE_FUNCTIONS, ScoreInputs, Scores
from ticketlab.sparsity.strategies import Strategy

Mask = dict[str, torch.Tensor]

for _score, _label, _kw in (("snip", "SNIP", {}), ("grasp", "GraSP", {"keep_high": False}),
                            ("synflow", "SynFlow", {"iterative": True})):
    STRATEGIES.register(_score, Strategy(_score, _label, _score, False, at_init=True, **_kw))
    STRATEGIES.register(f"{_score}_layerwise", Strategy(f"{_score}_layerwise", f"{_label} (layer-wise)", _score, True,
                                                        at_init=True, **_kw))


def get_strategy(name: str) -> Strategy:
    return STRATEGIES.get(name)


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
