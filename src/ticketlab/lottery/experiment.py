"""Everything an IMP run needs, built once from a config: data, task, model, scope, step counts.

`find`, `branch`, `eval` and `info` all start here, so a level re-evaluated later sees exactly the
model, data split and scope the run trained with. With a transfer (`init:`), the masked parameters
(`scope`) are `prune.scope` plus the transferred tensors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from ticketlab.config import Config, parse_steps, validate
from ticketlab.data.bundle import DataBundle
from ticketlab.errors import TicketlabError
from ticketlab.sparsity.level_files import read_weights
from ticketlab.lottery.transfer import Transfer, plan_transfer
from ticketlab.models.spec import BuiltModel
from ticketlab.sparsity import group_of, resolve_scope
from ticketlab.sparsity.enforce import with_followers
from ticketlab.sparsity.granularity import Granularity, build_granularity
from ticketlab.sparsity.group_rates import rate_pools
from ticketlab.sparsity.scope import unknown_group
from ticketlab.tasks import build_task_data, build_task_model, task_class
from ticketlab.tasks.base import Task
from ticketlab.train import resolve_device, seed_everything


@dataclass
class Experiment:
    cfg: Config
    data: DataBundle
    task: Task
    built: BuiltModel
    scope: list[str]
    device: torch.device
    steps_per_epoch: int
    rewind_step: int  # 0 for `init` / `pretrained`, N for late resetting
    transfer: Optional[Transfer] = None  # `init:` — a mask (and values) from another run
    prunable: Optional[list[str]] = None  # what IMP levels prune (prune.scope); None = all of `scope`
    _granularity: Optional[Granularity] = field(default=None, repr=False, compare=False)

    @property
    def prune_names(self) -> list[str]:
        """The masked parameters IMP may prune further: `prune.scope`, while `scope` (every masked
        parameter) also holds the transferred tensors outside it, whose mask is only carried."""
        return self.scope if self.prunable is None else self.prunable

    @property
    def model(self) -> nn.Module:
        return self.built.module

    def fresh_model(self, seed: int) -> nn.Module:
        """A newly drawn random initialisation of the same architecture (the `reinit` control):
        pretrained weights are not loaded, and the norm layers stay the kind the run used."""
        model_cfg = replace(self.cfg.model, weights=None)
        if self.cfg.model.weights and model_cfg.detection.norm == "auto":
            model_cfg = replace(model_cfg, detection=replace(model_cfg.detection, norm="frozen"))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return build_task_model(replace(self.cfg, model=model_cfg), self.data).module.to(self.device)

    def group_map(self) -> dict[str, Optional[str]]:
        """Module group of every parameter IMP may prune (for `prune.rates`)."""
        return {n: group_of(n, self.built.groups) for n in self.prune_names}

    def scope_weights(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {name: state[name] for name in self.scope}

    def example_input(self) -> Any:
        """What the model is called with on one image (validation, else training): a batch of one."""
        split = self.data.val if len(self.data.val) else self.data.train
        return self.task.example_input(split[0][0].to(self.device))

    def granularity(self) -> Granularity:
        """What one pruning decision removes (`prune.granularity`); channel groups are traced once."""
        if self._granularity is None:
            p = self.cfg.prune
            self._granularity = build_granularity(p.granularity, p.channel_score, self.model, self.example_input(),
                                                  self.prune_names)
        return self._granularity

    def enforced_mask(self, mask: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Every tensor held at 0 with `mask`: the mask, its followers (MoCo's key encoder), and the
        norm γ/β and biases of removed channels (granularity channel)."""
        return {**with_followers(mask, self.built.followers), **self.granularity().held(mask)}


def level_generator(seed: int, level: int) -> torch.Generator:
    """Randomness of level `level`'s pruning (strategy `random`): a pure function of seed and level."""
    return torch.Generator().manual_seed(seed * 1_000_003 + level)


def rewind_step_of(cfg: Config, steps_per_epoch: int) -> int:
    rewind = cfg.prune.rewind
    if rewind == "init":
        return 0
    if rewind == "pretrained":
        if not cfg.model.weights and not (cfg.init.source and cfg.init.mode == "ticket"):
            raise TicketlabError("prune.rewind: 'pretrained' needs model.weights (a local file of pretrained weights) "
                                 "or a ticket transfer (init.source with init.mode: ticket)")
        return 0
    return parse_steps(rewind, steps_per_epoch, key="prune.rewind")


def scope_of(cfg: Config, built: BuiltModel, transfer: Optional[Transfer]) -> tuple[list[str], list[str]]:
    """(every masked parameter, the ones IMP prunes): `prune.scope` on `built`, plus a transfer's tensors."""
    prunable = resolve_scope(built.module, built.groups, cfg.prune.scope if cfg.prune.scope is not None
                             else built.default_scope, cfg.prune.include, cfg.prune.exclude)
    masked = set(prunable) | set(transfer.mask if transfer else ())
    return [n for n, _ in built.module.named_parameters() if n in masked], prunable


def build_experiment(cfg: Config) -> Experiment:
    validate(cfg)  # a Config built in code has not been through load_config
    device = resolve_device(cfg.train.device)
    seed_everything(cfg.train.seed)
    data = build_task_data(cfg)
    task = task_class(cfg.task).build(cfg, data)
    built = build_task_model(cfg, data)
    built.module.to(device)
    transfer = plan_transfer(cfg, built.module)
    scope, prunable = scope_of(cfg, built, transfer)
    for g in cfg.prune.rates:
        if g not in built.groups:
            raise unknown_group("prune.rates", g, built.groups)
    rate_pools(prunable, {n: group_of(n, built.groups) for n in prunable}, cfg.prune.rates, cfg.prune.rate)
    steps_per_epoch = max(1, math.ceil(len(data.train) / cfg.train.batch_size))
    total = parse_steps(cfg.train.duration, steps_per_epoch, key="train.duration")
    rewind_step = rewind_step_of(cfg, steps_per_epoch)
    if rewind_step >= total:
        raise TicketlabError(f"prune.rewind: {cfg.prune.rewind} is at or past the end of training "
                             f"({cfg.train.duration} = {total} steps)")
    return Experiment(cfg, data, task, built, scope, device, steps_per_epoch, rewind_step, transfer, prunable)


def load_state(path: Path, model: nn.Module) -> dict[str, torch.Tensor]:
    """Read a weights file written by ticketlab and check it fits `model` (names and shapes)."""
    return read_weights(path, model.state_dict())
