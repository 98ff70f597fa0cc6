"""Pruning-at-init levels: the experiment's data, task and start weights turned into a saliency mask.

Level k of a run with an at-init strategy (SNIP, GraSP, SynFlow; `sparsity/pruning_at_init.py`) keeps
exactly as many weights as IMP's level k, chosen from level 0's mask by the strategy's score of
the weights every level starts from (the rewind point: `init`, `pretrained` or step N). The loss
batches are the first `prune.score_batches` training batches of the run's data order (the ones
level 0 trains on first); SynFlow needs only the input shape. Levels do not depend on each other,
so each is a one-shot (or, for SynFlow, iterative) prune at initialisation.
"""

from __future__ import annotations

from typing import Mapping

import torch

from ticketlab.errors import TicketlabError
from ticketlab.lottery.experiment import Experiment
from ticketlab.lottery.level import masked_state
from ticketlab.sparsity.enforce import with_followers
from ticketlab.sparsity.ranking import level_keep
from ticketlab.sparsity.pruning_at_init import get_strategy, prune_at_init
from ticketlab.sparsity.strategies import Strategy
from ticketlab.sparsity.saliency import ScoreInputs
from ticketlab.train.loaders import train_loader

Mask = dict[str, torch.Tensor]


def score_inputs(exp: Experiment, start_state: Mapping[str, torch.Tensor], mask: Mapping[str, torch.Tensor],
                 names: list[str]) -> ScoreInputs:
    """`exp.model` loaded with `start_state` ⊙ `mask`, the task's loss and the scoring batches."""
    cfg = exp.cfg
    model = exp.model
    model.load_state_dict(masked_state(dict(start_state), with_followers(dict(mask), exp.built.followers)))
    loader = train_loader(exp.data, batch_size=cfg.train.batch_size, seed=cfg.train.seed, start=0,
                          stop=cfg.prune.score_batches, num_workers=0, pin_memory=False)
    batches = list(loader)
    first = batches[0]
    example = first[0] if isinstance(first, (list, tuple)) else first
    device = exp.device

    def loss_fn(net: torch.nn.Module, batch) -> torch.Tensor:
        return exp.task.loss(net, batch, device)["loss"]

    return ScoreInputs(model=model, names=names, loss_fn=loss_fn, batches=batches, example_input=example)


def check_at_init(exp: Experiment) -> Strategy:
    strategy = get_strategy(exp.cfg.prune.strategy)
    if strategy.at_init and exp.cfg.prune.rewind_mode == "lr":
        raise TicketlabError(f"prune.rewind_mode: lr retrains each level from the previous level's weights; "
                             f"prune.strategy {strategy.name} prunes at initialisation: use rewind_mode weights")
    if strategy.at_init and exp.cfg.prune.rates:
        raise TicketlabError(f"prune.rates: per-group rates apply to IMP strategies; prune.strategy {strategy.name} "
                             "keeps each level's count of prune.rate")
    return strategy


def at_init_mask(exp: Experiment, mask0: Mapping[str, torch.Tensor], start_state: Mapping[str, torch.Tensor],
                 level: int, *, invert: bool = False) -> Mask:
    """Level `level`'s mask: exactly IMP level `level`'s count kept out of `mask0`, by the strategy's
    score of `start_state` (`invert`: the lowest-scored are kept)."""
    strategy = check_at_init(exp)
    names = list(exp.prune_names)  # transferred tensors outside prune.scope keep their mask as it is
    chosen = {n: mask0[n] for n in names}
    keep = level_keep(chosen, exp.cfg.prune.rate, level, layerwise=strategy.layerwise)
    inputs = score_inputs(exp, start_state, mask0, names)
    pruned = prune_at_init(strategy, inputs, chosen, keep, iterations=exp.cfg.prune.synflow_iterations,
                           invert=invert)
    return {**dict(mask0), **pruned}
