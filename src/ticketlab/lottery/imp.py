"""Iterative magnitude pruning with rewinding: level 0 dense, then prune → rewind → retrain.

Level k's mask comes from level k-1's trained weights (`final.safetensors`) and mask; its start
weights are the rewind point ⊙ mask: the weights level 0 started from (`init`, `pretrained`) or
the dense run's weights after N steps (late resetting, `Nit`/`Nep`, saved as
`level_00/rewind_point.safetensors`). With `prune.rewind_mode: lr` the start weights are level
k-1's final weights ⊙ mask instead (learning-rate rewinding); a pruning-at-init strategy draws
level k's mask from level 0's by a saliency score at the rewind point (`at_init.py`). Finished
levels (those with `metrics.json`) are never redone; every input of a level is read back from
files, so a resumed run computes the same masks. A transfer (`init:`, lottery/transfer.py) sets
level 0's start weights and mask; `RUN_DIR/init.json` records it.
With `prune.early_bird`, level 0 also draws early-bird masks and may end early (`early_bird.py`).

Under torchrun every rank runs this with the same config: each computes the masks from the same
files (the result is checked to agree, see `level.train_ticket`), rank 0 holds the run-dir lock
and writes, the others wait for its files at barriers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Collection, Optional

import contextlib
import copy
import json

import torch
from safetensors import safe_open
from torch import nn

from ticketlab.atomic import atomic_save_safetensors, atomic_write_json
from ticketlab.config import Config
from ticketlab.errors import TicketlabError
from ticketlab.lottery.at_init import at_init_mask, check_at_init
from ticketlab.lottery.early_bird import EarlyBird
from ticketlab.lottery.experiment import Experiment, build_experiment, level_generator, load_state
from ticketlab.lottery.level import TicketStart, train_ticket
from ticketlab.sparsity.level_files import check_level
from ticketlab.lottery.lock import run_lock
from ticketlab.rundir import (EARLY_BIRD_FILE, FINAL_FILE, INIT_FILE, MASK_FILE, REWIND_OPTIMIZER_FILE,
                              REWIND_POINT_FILE, START_FILE, RunDir)
from ticketlab.sparsity import full_mask, load_mask
from ticketlab.train import flatten_optimizer_state, unflatten_optimizer_state
from ticketlab.train.distributed import Dist, process_group
from ticketlab.stop import StopFlag, Stopped, nothing_to_checkpoint
from ticketlab.train.loop import LevelRun, RewindHook, StepHook



def save_optimizer_state(path: Path, optimizer: torch.optim.Optimizer) -> None:
    tensors, meta = flatten_optimizer_state(copy.deepcopy(optimizer.state_dict()))
    atomic_save_safetensors(path, tensors, {"optimizer": json.dumps(meta)})


def load_optimizer_state(path: Path) -> dict:
    if not path.is_file():
        raise TicketlabError(f"{path}: missing; prune.rewind_optimizer needs the optimizer state of the rewind point")
    with safe_open(str(path), "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
        meta = json.loads((f.metadata() or {}).get("optimizer", "null") or "null")
    if not isinstance(meta, dict):
        raise TicketlabError(f"{path}: not an optimizer state written by ticketlab")
    return unflatten_optimizer_state(tensors, meta)


def rewind_source(exp: Experiment, run: RunDir) -> tuple[dict[str, torch.Tensor], Optional[dict]]:
    """The (unmasked) weights every pruned level restarts from, and the optimizer state to restore."""
    level0 = run.level_dir(0)
    if exp.rewind_step == 0:
        return load_state(level0 / START_FILE, exp.model), None
    state = load_state(level0 / REWIND_POINT_FILE, exp.model)
    opt = load_optimizer_state(level0 / REWIND_OPTIMIZER_FILE) if exp.cfg.prune.rewind_optimizer else None
    return state, opt


def _save_rewind_point(level0: Path, with_optimizer: bool) -> RewindHook:
    def hook(step: int, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        if with_optimizer:
            save_optimizer_state(level0 / REWIND_OPTIMIZER_FILE, optimizer)
        atomic_save_safetensors(level0 / REWIND_POINT_FILE, model.state_dict())

    return hook


def level_start(exp: Experiment, run: RunDir, level: int) -> tuple[dict[str, torch.Tensor], Optional[dict]]:
    """The (unmasked) weights pruned level `level` trains from and the optimizer state to restore:
    the rewind point, or with `prune.rewind_mode: lr` the previous level's final weights and a
    fresh optimizer (the schedule restarts at the rewind step either way; Renda et al. 2020)."""
    if exp.cfg.prune.rewind_mode == "lr":
        return load_state(run.level_dir(level - 1) / "final.safetensors", exp.model), None
    return rewind_source(exp, run)


def next_mask(exp: Experiment, run: RunDir, level: int) -> dict[str, torch.Tensor]:
    prev = run.level_dir(level - 1)
    shapes = {n: tuple(exp.model.state_dict()[n].shape) for n in exp.scope}
    if check_at_init(exp).at_init:  # pruning at init: scored at the rewind point, from level 0's mask
        return at_init_mask(exp, load_mask(run.level_dir(0) / MASK_FILE, shapes),
                            rewind_source(exp, run)[0], level)
    prev_mask = load_mask(prev / MASK_FILE, shapes)
    state = load_state(prev / FINAL_FILE, exp.model)
    p = exp.cfg.prune
    names = exp.prune_names  # transferred tensors outside prune.scope keep their mask as it is
    pruned = exp.granularity().next_mask(p.strategy, state, {n: prev_mask[n] for n in names}, p.rate, p.rates,
                                         exp.group_map(), level_generator(exp.cfg.train.seed, level))
    return {**prev_mask, **pruned}


# How level 0 comes about: (experiment, run dir, dist, early-bird hook, stop flag) → its metrics.
# `run_imp` trains it (`default_level0`); a study cell whose dense level is shared links it instead
# (lottery/shared.py).
Level0 = Callable[[Experiment, RunDir, Dist, Optional[EarlyBird], Optional[StopFlag]], dict]


def run_imp(cfg: Config, out: Path, *, log: Callable[[str], None] = print, stop: Optional[StopFlag] = None,
            level0: Optional[Level0] = None) -> list[dict]:
    """Run (or resume) every level of `cfg` in run dir `out`; returns the summary rows.

    `stop`: a signal stops the run at the next step boundary or between levels (`ticketlab.stop`)."""
    run = RunDir(Path(out))
    p = cfg.prune
    with process_group(cfg.train.device, cfg.train.dist_timeout) as dist:
        with nothing_to_checkpoint(stop):  # nothing written yet: a signal (e.g. mid channel trace) ends it at once
            exp = build_experiment(cfg)  # validates data, model and scope before the run dir is touched
            check_at_init(exp)
            exp.granularity()  # channel groups traced (and a bad channel_score refused) before any training
        early = EarlyBird(exp, run.level_dir(0)) if p.early_bird or p.early_bird_stop else None
        with run_lock(run.root) if dist.is_main else contextlib.nullcontext():  # one writer per run dir
            dist.on_main(lambda: run.start(cfg, exp.task.record()))
            dist.same_everywhere(run.config_path.is_file(),
                                 f"whether {run.config_path} exists (RUN_DIR must be on a filesystem every node sees)")
            return _run_levels(cfg, exp, run, log if dist.is_main else _quiet, dist, early, stop,
                               level0 or default_level0)


def _quiet(message: str) -> None:
    return None


def finish_early_bird(early: EarlyBird, exp: Experiment, run: RunDir) -> None:
    level0 = run.level_dir(0)
    early.finish(load_state(level0 / FINAL_FILE, exp.model), run.read_metrics(0)["steps"])


def level0_start(exp: Experiment) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Level 0's start weights and mask: the built model, dense, with a transfer applied if any."""
    init = {k: v.detach().clone() for k, v in exp.model.state_dict().items()}
    mask = full_mask(exp.scope_weights(init))
    if exp.transfer is not None:
        init.update({k: v.to(init[k].device, init[k].dtype) for k, v in exp.transfer.values.items()})
        mask.update({k: m.to(mask[k].device) for k, m in exp.transfer.mask.items()})
    return init, mask


def write_init_record(exp: Experiment, run: RunDir) -> None:
    """`RUN_DIR/init.json`: what `model.weights` and `init:` put into the model before level 0."""
    record: dict = {}
    if exp.built.loaded is not None:
        record["weights"] = {"file": exp.cfg.model.weights, **exp.built.loaded}
    if exp.transfer is not None:
        record["transfer"] = exp.transfer.record(exp.model)
    if record:
        atomic_write_json(run.root / INIT_FILE, record)


def train_level0(exp: Experiment, run: RunDir, dist: Dist, *, rewind_steps: Collection[int] = (),
                 on_rewind: Optional[RewindHook] = None, on_step: Optional[StepHook] = None,
                 stop: Optional[StopFlag] = None) -> dict:
    """Train the dense level from `level0_start` (or, resumed, from the weights it was started with)."""
    out_dir = run.level_dir(0)
    init, mask = level0_start(exp)
    level0_file = out_dir / START_FILE
    if level0_file.is_file():  # a resumed level 0 starts from the weights it was started with
        init = load_state(level0_file, exp.model)
    return train_ticket(exp, TicketStart(out_dir, mask, init, {"level": 0}), LevelRun(
        rewind_steps=rewind_steps, on_rewind=on_rewind if dist.is_main else None, on_step=on_step,
        desc=f"level 0/{exp.cfg.prune.levels}", dist=dist, log_dir=run.root / "tensorboard" / out_dir.name,
        stop=stop))


def default_level0(exp: Experiment, run: RunDir, dist: Dist, early: Optional[EarlyBird],
                   stop: Optional[StopFlag]) -> dict:
    """Level 0 trained here, saving the late-resetting rewind point and drawing early-bird masks."""
    k = exp.rewind_step
    metrics = train_level0(exp, run, dist, rewind_steps={k} if k > 0 else (),
                           on_rewind=_save_rewind_point(run.level_dir(0), exp.cfg.prune.rewind_optimizer),
                           on_step=early, stop=stop)
    if early is not None:
        dist.on_main(lambda: finish_early_bird(early, exp, run))
    return metrics


def check_finished(exp: Experiment, run: RunDir, level: int) -> None:
    """A finished level a resumed run builds on is checked first (`level_files.check_level` against
    this run's model): a damaged one stops the run, naming its file, and is never overwritten."""
    level_dir = run.level_dir(level)
    try:
        check_level(level_dir, exp.model.state_dict(), exp.scope)
    except TicketlabError as e:
        raise TicketlabError(f"{e}; {level_dir} is finished, so find will not redo it: restore its files, or "
                             f"move it (and the levels after it) away to train it again") from None


def _run_levels(cfg: Config, exp: Experiment, run: RunDir, log: Callable[[str], None], dist: Dist,
                early: Optional[EarlyBird], stop: Optional[StopFlag], level0: Level0) -> list[dict]:
    dist.on_main(lambda: write_init_record(exp, run))
    levels = range(cfg.prune.levels + 1)
    for level in levels:
        if run.is_done(level):
            check_finished(exp, run, level)
            if level == 0 and early is not None and not (run.level_dir(0) / EARLY_BIRD_FILE).is_file():
                dist.on_main(lambda: finish_early_bird(early, exp, run))  # cut off between level 0's files
            continue
        if stop is not None and any(dist.all_gather(stop.requested)):  # every rank stops here, or none
            raise Stopped(stop.signame or "a signal to another process", f"{run.root}: before level {level}")
        out_dir = run.level_dir(level)
        desc = f"level {level}/{cfg.prune.levels}"
        if level == 0:
            metrics = level0(exp, run, dist, early, stop)
        else:
            mask = next_mask(exp, run, level)
            start, opt_state = level_start(exp, run, level)
            metrics = train_ticket(exp, TicketStart(out_dir, mask, start, {"level": level}), LevelRun(
                start_step=exp.rewind_step, optimizer_state=opt_state, desc=desc, dist=dist,
                log_dir=run.root / "tensorboard" / out_dir.name, stop=stop))
        dist.on_main(run.write_summary)
        head = exp.task.headline
        log(f"{desc}: scope sparsity {metrics['sparsity_scope']:.1%}, network sparsity "
            f"{metrics['sparsity_network']:.1%}, {head} {metrics.get(head, float('nan')):.4f} "
            f"({metrics['seconds']:.0f} s)")
    return dist.all_gather(dist.on_main(run.write_summary))[0]
