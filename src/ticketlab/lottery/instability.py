"""Linear mode connectivity of a finished level: instability analysis and the path to the next level.

- `instability` (Frankle, Dziugaite, Roy & Carbin, ICML 2020): `copies` networks are trained from
  the level's start weights and mask — the rewind point (for level 0 the rewind point of late
  resetting, else init), or with `prune.rewind_mode: lr` the previous level's final weights — each
  with its own data-order seed (`train.seed` of the copy: data order and augmentation), so they
  differ only by SGD noise. For every pair, the network (1−α)·w_a + α·w_b is evaluated at `points`
  evenly spaced α in [0, 1]. The **error barrier** is the largest error on the path minus the mean
  error of its two ends (error = 1 − headline metric, e.g. 1 − accuracy; the headline itself when
  the task's headline is lower-is-better); ~0 means the copies
  found one linearly connected minimum, i.e. the level is stable (the paper's threshold: 2%).
- `interpolate_next` (Paul et al., 2022): the same path between this level's final weights and the
  next level's, no training.

Each point first recomputes the BatchNorm running statistics (cumulative average over a fixed
training subset: the first `bn_batches` batches of the run's data order) — averaged weights do not
fit either end's statistics; a model without BatchNorm is evaluated as is. Files, under
`level_NN/branch_<name>/`: `copy_<i>/` (each a ticket directory: mask, rewind, final, metrics,
history), `interpolation.csv` (pair, α, every metric) and `metrics.json` (written last).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import statistics
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ticketlab.analysis import tables
from ticketlab.errors import TicketlabError
from ticketlab.lottery.experiment import Experiment, load_state
from ticketlab.lottery.imp import level_start, rewind_source
from ticketlab.lottery.level import TicketStart, sparsity_metrics, train_ticket
from ticketlab.rundir import FINAL_FILE, METRICS_FILE, RunDir, write_metrics
from ticketlab.train import deterministic_mode, evaluate
from ticketlab.train.amp import amp_for
from ticketlab.train.loaders import train_loader, val_loader
from ticketlab.train.loop import LevelRun

INSTABILITY = "instability"
INTERPOLATE_NEXT = "interpolate_next"
PATH_FILE = "interpolation.csv"


def interpolate(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor], alpha: float) -> dict[str, torch.Tensor]:
    """(1−α)·a + α·b for every floating-point entry; integer buffers (BN's step count) from `a`."""
    return {k: torch.lerp(v, b[k].to(v.device), alpha) if v.is_floating_point() else v.clone() for k, v in a.items()}


def barrier(values: Sequence[float], *, higher_is_better: bool) -> float:
    """How much worse the worst point of a path is than the mean of its two ends (≥ 0)."""
    ends = (values[0] + values[-1]) / 2.0
    return ends - min(values) if higher_is_better else max(values) - ends


def recompute_batchnorm(model: nn.Module, exp: Experiment, batches: Sequence[Any]) -> bool:
    """Reset every BatchNorm's running statistics and re-estimate them (cumulative average) in train
    mode over `batches`; returns whether the model has any BatchNorm. The model ends in eval mode."""
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    if norms:
        momenta = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None
        model.train()
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            for batch in batches:
                exp.task.loss(model, batch, exp.device)
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
    model.eval()
    return bool(norms)


@dataclasses.dataclass
class PathEvaluator:
    """Evaluates points of a path on the validation set, BatchNorm recomputed at each."""

    exp: Experiment
    bn_batches: int

    def __post_init__(self) -> None:
        cfg = self.exp.cfg
        self.batches = list(train_loader(self.exp.data, batch_size=cfg.train.batch_size, seed=cfg.train.seed,
                                         start=0, stop=self.bn_batches, num_workers=0, pin_memory=False))
        self.loader = val_loader(self.exp.data, batch_size=cfg.train.eval_batch_size,
                                 num_workers=cfg.data.num_workers, pin_memory=False)
        self.amp = amp_for(self.exp.device, cfg.train.amp, cfg.train.amp_dtype)

    def path(self, a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor], points: int) -> list[dict]:
        model = self.exp.model
        rows = []
        with deterministic_mode(self.exp.cfg.train.deterministic):
            for i in range(points):
                alpha = i / (points - 1)
                model.load_state_dict(interpolate(a, b, alpha))
                has_bn = recompute_batchnorm(model, self.exp, self.batches)
                metrics = evaluate(model, self.exp.task, self.loader, self.exp.device, self.amp)
                rows.append({"alpha": alpha, **metrics, "bn_recomputed": has_bn})
        return rows


def path_summary(rows: Sequence[dict], headline: str, higher_is_better: bool = True) -> dict:
    """Barriers of one path: the headline's as an error barrier, and the validation loss's."""
    out = {"error_barrier": barrier([r[headline] for r in rows], higher_is_better=higher_is_better),
           f"{headline}_start": rows[0][headline], f"{headline}_end": rows[-1][headline],
           f"{headline}_min": min(r[headline] for r in rows)}
    if all("val_loss" in r for r in rows):
        out["loss_barrier"] = barrier([r["val_loss"] for r in rows], higher_is_better=False)
    return out


def _write_path(out: Path, rows_by_pair: Mapping[str, Sequence[dict]]) -> None:
    keys = list(dict.fromkeys(k for rows in rows_by_pair.values() for r in rows for k in r))
    body = [[pair, *[r.get(k) for k in keys]] for pair, rows in rows_by_pair.items() for r in rows]
    tables.write_csv(out / PATH_FILE, (["pair", *keys], body))


def _finished(out: Path, args: dict) -> Optional[dict]:
    """The branch's metrics if it finished with the same arguments; an error if with others."""
    path = out / METRICS_FILE
    if not path.is_file():
        return None
    done = json.loads(path.read_text())
    differ = {k: (done.get(k), v) for k, v in args.items() if done.get(k) != v}
    if differ:
        shown = ", ".join(f"{k}: {old!r} there, {new!r} now" for k, (old, new) in differ.items())
        raise TicketlabError(f"{out}: already finished with other arguments ({shown}); remove it to redo")
    return done


def _mean(values: Sequence[float]) -> float:
    return statistics.fmean(values)


def run_instability(exp: Experiment, run: RunDir, level: int, mask: dict[str, torch.Tensor], out: Path, *,
                    seeds: Sequence[int], points: int, bn_batches: int) -> dict:
    """Train `len(seeds)` copies of level `level` and measure the error barrier of every pair."""
    if len(seeds) < 2:
        raise TicketlabError("branch instability: --copies must be 2 or more")
    args = {"level": level, "branch": INSTABILITY, "copies": len(seeds), "data_seeds": list(seeds),
            "points": points, "bn_batches": bn_batches}
    done = _finished(out, args)
    if done is not None:
        return done
    start, opt_state = rewind_source(exp, run) if level == 0 else level_start(exp, run, level)
    finals = []
    for i, seed in enumerate(seeds):
        copy_dir = out / f"copy_{i}"
        if not (copy_dir / METRICS_FILE).is_file():
            copy_exp = dataclasses.replace(exp, cfg=dataclasses.replace(
                exp.cfg, train=dataclasses.replace(exp.cfg.train, seed=seed)))
            identity = {"level": level, "branch": INSTABILITY, "copy": i, "data_seed": seed}
            train_ticket(copy_exp, TicketStart(copy_dir, mask, start, identity), LevelRun(
                start_step=exp.rewind_step, optimizer_state=opt_state, desc=f"level {level} instability copy {i}"))
        elif json.loads((copy_dir / METRICS_FILE).read_text()).get("data_seed") != seed:
            raise TicketlabError(f"{copy_dir}: trained with another data seed; remove {out} to redo")
        finals.append(load_state(copy_dir / FINAL_FILE, exp.model))
    evaluator = PathEvaluator(exp, bn_batches)
    paths = {f"{i}-{j}": evaluator.path(finals[i], finals[j], points)
             for i, j in itertools.combinations(range(len(finals)), 2)}
    head = exp.task.headline
    per_pair = {pair: path_summary(rows, head, exp.task.higher_is_better) for pair, rows in paths.items()}
    _write_path(out, paths)
    metrics = {**args, **sparsity_metrics(exp, mask), "rewind_step": exp.rewind_step,
               "rewind": exp.cfg.prune.rewind, "headline": head,
               **{k: _mean([s[k] for s in per_pair.values()]) for k in next(iter(per_pair.values()))},
               "pairs": per_pair}
    write_metrics(out, metrics)
    return metrics


def run_interpolate_next(exp: Experiment, run: RunDir, level: int, mask: dict[str, torch.Tensor], out: Path, *,
                         points: int, bn_batches: int) -> dict:
    """The error barrier on the straight line from level `level`'s final weights to level `level+1`'s."""
    if not run.is_done(level + 1):
        raise TicketlabError(f"branch interpolate_next: {run.level_dir(level + 1)} is not finished; the path "
                             "needs the next level's final weights")
    args = {"level": level, "branch": INTERPOLATE_NEXT, "next_level": level + 1, "points": points,
            "bn_batches": bn_batches}
    done = _finished(out, args)
    if done is not None:
        return done
    a = load_state(run.level_dir(level) / FINAL_FILE, exp.model)
    b = load_state(run.level_dir(level + 1) / FINAL_FILE, exp.model)
    rows = PathEvaluator(exp, bn_batches).path(a, b, points)
    _write_path(out, {f"{level}-{level + 1}": rows})
    nxt = run.read_metrics(level + 1)
    metrics = {**args, **sparsity_metrics(exp, mask), "next_sparsity_scope": nxt.get("sparsity_scope"),
               "rewind_step": exp.rewind_step, "rewind": exp.cfg.prune.rewind, "headline": exp.task.headline,
               **path_summary(rows, exp.task.headline, exp.task.higher_is_better)}
    out.mkdir(parents=True, exist_ok=True)
    write_metrics(out, metrics)
    return metrics

