"""Iterative magnitude pruning with rewinding: level 0 dense, then prune → rewind → retrain.

Level k's mask comes from level k-1's trained weights (`final.safetensors`) and mask; its start
weights are the rewind point ⊙ mask: the weights level 0 started from (`init`, `pretrained`) or
the dense run's weights after N steps (late resetting, `Nit`/`Nep`, saved as
`level_00/rewind_point.safetensors`). Finished levels (those with `metrics.json`) are never redone;
every input of a level is read back from files, so a resumed run computes the same masks. A transfer
(`init:`, lottery/transfer.py) sets level 0's start weights and mask; `RUN_DIR/init.json` records it.
With `prune.early_bird`, level 0 also draws early-bird masks and may end early (`early_bird.py`).

Under torchrun every rank runs this with the same config: each computes the masks from the same
files (the result is checked to agree, see `level.train_ticket`), rank 0 holds the run-dir lock
and writes, the others wait for its files at barriers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import contextlib
import copy
import json

import torch
from safetensors import safe_open
from torch import nn

from ticketlab.atomic import atomic_save_safetensors, atomic_write_json
from ticketlab.config import Config
from ticketlab.errors import TicketlabError
from ticketlab.lottery.early_bird import EarlyBird
from ticketlab.lottery.experiment import Experiment, build_experiment, level_generator, load_state
from ticketlab.lottery.level import train_ticket
from ticketlab.lottery.lock import run_lock
from ticketlab.rundir import EARLY_BIRD_FILE, RunDir
from ticketlab.sparsity import full_mask, load_mask
from ticketlab.sparsity.group_rates import prune_by_groups
from ticketlab.train import flatten_optimizer_state, unflatten_optimizer_state
from ticketlab.train.distributed import Dist, process_group

REWIND_POINT = "rewind_point.safetensors"
REWIND_OPTIMIZER = "rewind_optimizer.safetensors"
INIT_RECORD = "init.json"


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
        return load_state(level0 / "rewind.safetensors", exp.model), None
    state = load_state(level0 / REWIND_POINT, exp.model)
    opt = load_optimizer_state(level0 / REWIND_OPTIMIZER) if exp.cfg.prune.rewind_optimizer else None
    return state, opt


def _save_rewind_point(level0: Path, with_optimizer: bool) -> Callable[[nn.Module, torch.optim.Optimizer], None]:
    def hook(model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        if with_optimizer:
            save_optimizer_state(level0 / REWIND_OPTIMIZER, optimizer)
        atomic_save_safetensors(level0 / REWIND_POINT, model.state_dict())

    return hook


def next_mask(exp: Experiment, run: RunDir, level: int) -> dict[str, torch.Tensor]:
    prev = run.level_dir(level - 1)
    shapes = {n: tuple(exp.model.state_dict()[n].shape) for n in exp.scope}
    prev_mask = load_mask(prev / "mask.safetensors", shapes)
    weights = exp.scope_weights(load_state(prev / "final.safetensors", exp.model))
    p = exp.cfg.prune
    names = exp.prune_names  # transferred tensors outside prune.scope keep their mask as it is
    pruned = prune_by_groups(p.strategy, {n: weights[n] for n in names}, {n: prev_mask[n] for n in names},
                             p.rate, p.rates, exp.group_map(), level_generator(exp.cfg.train.seed, level))
    return {**prev_mask, **pruned}


def run_imp(cfg: Config, out: Path, *, log: Callable[[str], None] = print) -> list[dict]:
    """Run (or resume) every level of `cfg` in run dir `out`; returns the summary rows."""
    run = RunDir(Path(out))
    p = cfg.prune
    with process_group(cfg.train.device, cfg.train.dist_timeout) as dist:
        exp = build_experiment(cfg)  # validates data, model and scope before the run dir is touched
        early = EarlyBird(exp, run.level_dir(0)) if p.early_bird or p.early_bird_stop else None
        with run_lock(run.root) if dist.is_main else contextlib.nullcontext():  # one writer per run dir
            dist.on_main(lambda: run.start(cfg, exp.task.record()))
            dist.same_everywhere(run.config_path.is_file(),
                                 f"whether {run.config_path} exists (RUN_DIR must be on a filesystem every node sees)")
            return _run_levels(cfg, exp, run, log if dist.is_main else _quiet, dist, early)


def _quiet(message: str) -> None:
    return None


def _finish_early_bird(early: EarlyBird, exp: Experiment, run: RunDir) -> None:
    level0 = run.level_dir(0)
    early.finish(load_state(level0 / "final.safetensors", exp.model), run.read_metrics(0)["steps"])


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
        atomic_write_json(run.root / INIT_RECORD, record)


def _run_levels(cfg: Config, exp: Experiment, run: RunDir, log: Callable[[str], None], dist: Dist,
                early: Optional[EarlyBird] = None) -> list[dict]:
    dist.on_main(lambda: write_init_record(exp, run))
    levels = range(cfg.prune.levels + 1)
    for level in levels:
        if run.is_done(level):
            if level == 0 and early is not None and not (run.level_dir(0) / EARLY_BIRD_FILE).is_file():
                dist.on_main(lambda: _finish_early_bird(early, exp, run))  # cut off between level 0's files
            continue
        out_dir = run.level_dir(level)
        desc = f"level {level}/{cfg.prune.levels}"
        tensorboard = run.root / "tensorboard" / out_dir.name
        if level == 0:
            init, mask = level0_start(exp)
            level0_file = out_dir / "rewind.safetensors"
            if level0_file.is_file():  # a resumed level 0 starts from the weights it was started with
                init = load_state(level0_file, exp.model)
            metrics = train_ticket(
                exp, out_dir, mask=mask, start_state=init,
                identity={"level": 0},
                rewind_step=exp.rewind_step if exp.rewind_step > 0 else None,
                on_rewind=(_save_rewind_point(out_dir, cfg.prune.rewind_optimizer)
                           if exp.rewind_step > 0 and dist.is_main else None),
                on_step=early, desc=desc, dist=dist, log_dir=tensorboard,
            )
            if early is not None:
                dist.on_main(lambda: _finish_early_bird(early, exp, run))
        else:
            mask = next_mask(exp, run, level)
            start, opt_state = rewind_source(exp, run)
            metrics = train_ticket(
                exp, out_dir, mask=mask, start_state=start, identity={"level": level},
                optimizer_state=opt_state, start_step=exp.rewind_step, desc=desc, dist=dist, log_dir=tensorboard,
            )
        dist.on_main(run.write_summary)
        head = exp.task.headline
        log(f"{desc}: scope sparsity {metrics['sparsity_scope']:.1%}, network sparsity "
            f"{metrics['sparsity_network']:.1%}, {head} {metrics.get(head, float('nan')):.4f} "
            f"({metrics['seconds']:.0f} s)")
    return dist.all_gather(dist.on_main(run.write_summary))[0]
