"""The one training loop: every task, every IMP level, dense or masked, fresh or resumed.

A level trains from `start_step` to the configured duration. Everything that decides the outcome
is a function of the config and the step — the data order and augmentation (`data_order`), the
learning rate (`schedule`) — or is in the checkpoint (weights, optimizer, torch RNG, loss sums),
so a run killed at any moment and started again ends with the same weights, bit for bit, as one
that never stopped. Evaluation runs under its own RNG fork, so how often one evaluates does not
change the training either.

Under torchrun (`dist`, see `distributed`) the model is wrapped in DistributedDataParallel, each
rank trains on its shard of every global batch and evaluates a slice of the validation set whose
results are merged before scoring; only rank 0 writes history, checkpoints and TensorBoard logs.
The checkpoint holds every rank's RNG state, so a job resumes exactly with the same number of
processes (the checkpoint records it and refuses another).
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Protocol

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim import Optimizer
from tqdm.auto import tqdm

from ticketlab.config import TrainConfig, parse_steps
from ticketlab.data.bundle import DataBundle
from ticketlab.errors import TicketlabError
from ticketlab.tasks.base import Task
from ticketlab.train.amp import Amp, amp_for
from ticketlab.train.checkpoint import (CHECKPOINT_FILE, capture_rng, load_checkpoint, load_optimizer_state,
                                        merge_rank_rng, save_checkpoint)
from ticketlab.train.data_order import derive_seed, steps_per_epoch
from ticketlab.train.device import deterministic_mode, resolve_device, seed_everything
from ticketlab.train.distributed import SINGLE, Dist
from ticketlab.train.history import HISTORY_FILE, TRAILING, write_history
from ticketlab.train.loaders import train_loader, val_loader
from ticketlab.train.schedule import LrSchedule, apply_lr, build_optimizer, schedule_from_config
from ticketlab.train.tensorboard import ScalarLog


class Enforcer(Protocol):
    """What the loop needs from `ticketlab.sparsity.enforce.MaskEnforcer`."""

    def zero_weights(self) -> None: ...
    def mask_grads(self) -> None: ...
    def after_step(self, optimizer: Optimizer) -> None: ...
    def mask_optimizer_state(self, optimizer: Optimizer) -> None: ...


RewindHook = Callable[[nn.Module, Optimizer], None]
StepHook = Callable[[int, nn.Module], bool]  # (step, model) → True to end the level at this step


@dataclass
class TrainResult:
    metrics: dict[str, float]  # final evaluation
    history: list[dict[str, Any]] = field(default_factory=list)
    steps: int = 0  # updates this level made: final_step - start_step (resumed parts included)
    final_step: int = 0  # the step counter at the end: the level's total duration
    seconds: float = 0.0  # training + evaluation time, summed over resumed runs


@dataclass(frozen=True)
class Plan:
    """The config's step lengths resolved for this dataset."""

    steps_per_epoch: int
    total: int
    eval_every: int  # 0 = only at the end
    checkpoint_every: int  # 0 = never
    schedule: LrSchedule


def plan_level(cfg: TrainConfig, num_train: int, world_size: int = 1) -> Plan:
    if num_train <= 0:
        raise TicketlabError("data: the training split is empty")
    if cfg.batch_size <= 0:
        raise TicketlabError(f"train.batch_size: must be positive, got {cfg.batch_size}")
    check_shardable(cfg.batch_size, num_train, world_size)
    spe = steps_per_epoch(num_train, cfg.batch_size)
    schedule = schedule_from_config(cfg, spe)
    return Plan(steps_per_epoch=spe, total=schedule.total,
                eval_every=parse_steps(cfg.eval_every, spe, key="train.eval_every"),
                checkpoint_every=parse_steps(cfg.checkpoint_every, spe, key="train.checkpoint_every"),
                schedule=schedule)


@dataclass
class _Progress:
    """Everything about a level in flight that is not weights or optimizer state; it travels in the
    checkpoint's JSON so that a resumed level logs exactly what an uninterrupted one would."""

    step: int
    last_lr: float
    history: list[dict[str, Any]] = field(default_factory=list)
    sums: dict[str, float] = field(default_factory=dict)  # loss terms summed since the last row
    count: int = 0  # steps in `sums`
    seconds_before: float = 0.0  # time spent by earlier, interrupted runs of this level

    def to_extra(self, fingerprint: dict[str, Any], seconds: float, scaler: dict) -> dict[str, Any]:
        return {"fingerprint": fingerprint, "history": self.history, "sums": self.sums, "count": self.count,
                "seconds": seconds, "lr": self.last_lr, "scaler": scaler}

    @classmethod
    def from_extra(cls, step: int, extra: dict[str, Any], fingerprint: dict[str, Any], where: Path) -> "_Progress":
        saved = {"world_size": 1, **extra.get("fingerprint", {})}  # written before DDP existed: 1 process
        for key, now in fingerprint.items():
            if saved.get(key) != now:
                raise TicketlabError(f"{where}: checkpoint was written with {key}={saved.get(key)!r}, this "
                                     f"run has {now!r}; restore the config or delete the checkpoint")
        return cls(step=step, last_lr=extra["lr"], history=extra["history"], sums=extra["sums"],
                   count=extra["count"], seconds_before=extra["seconds"])


def check_shardable(batch_size: int, num_train: int, world_size: int) -> None:
    """`train.batch_size` is the global batch: every one of `world_size` processes needs an equal
    share of it, and at least one sample of an epoch's last, smaller batch."""
    if world_size <= 1:
        return
    if batch_size % world_size:
        raise TicketlabError(f"train.batch_size: {batch_size} (the global batch) is not divisible by the "
                             f"{world_size} processes; use a multiple of {world_size}")
    last = num_train % batch_size
    if 0 < last < world_size:
        raise TicketlabError(f"train.batch_size: with {num_train} training samples the last batch of each epoch "
                             f"has {last}, fewer than the {world_size} processes; choose another batch size")


def _due(step: int, every: int) -> bool:
    return every > 0 and step % every == 0


def evaluate(model: nn.Module, task: Task, loader: Any, device: torch.device, amp: Amp,
             dist: Dist = SINGLE) -> dict[str, float]:
    """task.evaluate in eval mode, without grads, under a forked RNG; restores the model's mode.

    Under DDP with a task that `shards_evaluation`, `loader` is this rank's slice: the slices'
    results are gathered (in rank order = file order) and scored once, on rank 0; every rank
    returns the same metrics."""
    was_training = model.training
    devices = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    model.eval()
    try:
        with torch.random.fork_rng(devices=devices), torch.no_grad(), amp.autocast():
            if not dist.enabled:
                metrics = task.evaluate(model, loader, device)
            elif task.shards_evaluation:  # each rank scores its slice, rank 0 merges
                shards = dist.all_gather(task.evaluate_shard(model, loader, device))
                metrics = dist.all_gather(task.merge_evaluations(shards) if dist.is_main else None)[0]
            else:
                metrics = dist.all_gather(task.evaluate(model, loader, device) if dist.is_main else None)[0]
    finally:
        model.train(was_training)
    return {k: float(v) for k, v in metrics.items()}


def _history_row(step: int, plan: Plan, sums: dict[str, float], count: int, metrics: dict[str, float],
                 lr: float, seconds: float) -> dict[str, Any]:
    row: dict[str, Any] = {"step": step, "epoch": step / plan.steps_per_epoch}
    if count:
        row.update({k: v / count for k, v in sums.items()})
    for k, v in metrics.items():
        row[f"val_{k}" if k in row or k in TRAILING else k] = v
    row["lr"], row["seconds"] = lr, seconds
    return row


def _check_finite(terms: dict[str, torch.Tensor], step: int, total: int, checkpoint: Path,
                  dist: Dist = SINGLE, share: float = 1.0) -> dict[str, float]:
    """Loss terms as floats (one device sync); a NaN/inf one stops the level with a clear error.

    Under DDP the terms are this rank's, weighted by its `share` of the batch and summed over ranks:
    the batch means one process would log, and every rank stops at the same step."""
    if "loss" not in terms:
        raise TicketlabError(f"task loss returned {sorted(terms)} without the total under 'loss'")
    local = torch.stack([v.detach().float().mean() for v in terms.values()])
    values = (dist.all_reduce_sum(local * share) if dist.enabled else local).tolist()
    out = dict(zip(terms, values))
    for name in sorted(out, key=lambda k: k == "loss"):  # name the culprit term before the total
        value = out[name]
        if not math.isfinite(value):
            kept = (f"; the last checkpoint ({checkpoint}) is kept: rerun with a lower --set train.lr to "
                    "resume from it, or delete it to restart the level" if checkpoint.exists() else "")
            raise TicketlabError(f"training diverged at step {step + 1} of {total}: loss term {name!r} "
                                 f"is {value} (try a lower train.lr or a longer train.warmup){kept}")
    return out


def train_level(model: nn.Module, task: Task, data: DataBundle, cfg: TrainConfig, *, workdir: str | Path,
                enforcer: Optional[Enforcer] = None, start_step: int = 0,
                optimizer_state: Optional[dict] = None, rewind_step: Optional[int] = None,
                on_rewind: Optional[RewindHook] = None, desc: str = "", num_workers: int = 0,
                on_step: Optional[StepHook] = None, dist: Dist = SINGLE,
                log_dir: Optional[Path] = None) -> TrainResult:
    """Train `model` on `task` from `start_step` to `cfg.duration`; resume from
    `workdir/checkpoint.safetensors` when it exists.

    - `start_step > 0` is late resetting: schedule and data order continue from that step.
    - `optimizer_state` (an `optimizer.state_dict()`) is loaded into the fresh optimizer.
    - `enforcer` keeps pruned weights at zero (see `Enforcer`).
    - `on_rewind(model, optimizer)` is called once the step counter equals `rewind_step`
      (0 = before the first update); a resumed run that is already past it does not call it again.
      Snapshot with copies: the objects keep training after the call.
    - `on_step(step, model)` is called after every update (after `on_rewind`); returning True
      ends the level there (evaluated, like the last step), e.g. an early-bird stop.
    - Evaluates every `cfg.eval_every` steps and at the end, checkpoints every
      `cfg.checkpoint_every` steps, writes `workdir/history.csv`. The checkpoint is left in place;
      delete it with `clear_checkpoint(workdir)` once the level's results are saved.
    - `dist` (under torchrun): train with DDP; only rank 0 writes. Every rank must call this.
    - `log_dir`: TensorBoard scalars go there (rank 0, `cfg.tensorboard`).
    """
    workdir = Path(workdir)
    if dist.is_main:
        workdir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.device)
    with deterministic_mode(cfg.deterministic):
        return _train(model, task, data, cfg, workdir=workdir, device=device, enforcer=enforcer,
                      start_step=start_step, optimizer_state=optimizer_state, rewind_step=rewind_step,
                      on_rewind=on_rewind, desc=desc, num_workers=num_workers, on_step=on_step, dist=dist,
                      log_dir=log_dir if cfg.tensorboard and dist.is_main else None)


def _wrap(model: nn.Module, cfg: TrainConfig, device: torch.device, dist: Dist) -> nn.Module:
    """The module the training steps call: `model` itself, or its DDP wrapper (with SyncBatchNorm
    on CUDA). channels_last is applied on CUDA only, so CPU results do not depend on it."""
    if device.type == "cuda" and cfg.channels_last:
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    if not dist.enabled:
        return model
    if device.type == "cuda" and cfg.sync_batchnorm:
        nn.SyncBatchNorm.convert_sync_batchnorm(model)  # swaps the BatchNorm children in place
    ids = [torch.cuda.current_device()] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def _train(model: nn.Module, task: Task, data: DataBundle, cfg: TrainConfig, *, workdir: Path,
           device: torch.device, enforcer: Optional[Enforcer], start_step: int,
           optimizer_state: Optional[dict], rewind_step: Optional[int], on_rewind: Optional[RewindHook],
           desc: str, num_workers: int, on_step: Optional[StepHook], dist: Dist,
           log_dir: Optional[Path]) -> TrainResult:
    plan = plan_level(cfg, len(data.train), dist.world_size)  # type: ignore[arg-type]
    total = plan.total
    if not 0 <= start_step <= total:
        raise TicketlabError(f"start step {start_step} is outside the level's 0…{total} steps "
                             f"(train.duration={cfg.duration})")
    model.to(device)
    model.train()
    optimizer = build_optimizer([p for p in model.parameters() if p.requires_grad], cfg)
    if optimizer_state is not None:
        load_optimizer_state(optimizer, optimizer_state, where="rewind optimizer state")
    amp = amp_for(device, cfg.amp, cfg.amp_dtype)
    ckpt = workdir / CHECKPOINT_FILE
    fingerprint = {"total_steps": total, "steps_per_epoch": plan.steps_per_epoch,
                   "batch_size": cfg.batch_size, "seed": cfg.seed, "start_step": start_step,
                   "optimizer": cfg.optimizer, "world_size": dist.world_size}

    resumed = ckpt.exists()
    dist.same_everywhere(resumed, f"whether {ckpt} exists (the run dir must be on a filesystem every node sees)")
    if resumed:
        step, extra = load_checkpoint(ckpt, model, optimizer, rank=dist.rank)
        progress = _Progress.from_extra(step, extra, fingerprint, ckpt)
        if extra.get("scaler"):
            amp.scaler.load_state_dict(extra["scaler"])
        if dist.is_main:
            write_history(workdir / HISTORY_FILE, progress.history)  # drops rows logged after the checkpoint
    else:
        seed_everything(derive_seed(cfg.seed, "train", start_step))
        progress = _Progress(step=start_step, last_lr=optimizer.param_groups[0]["initial_lr"]
                             * plan.schedule.factor(max(start_step - 1, 0)))
    if enforcer is not None:
        enforcer.zero_weights()
        enforcer.mask_optimizer_state(optimizer)
    if on_rewind is not None and rewind_step == progress.step and not resumed:
        on_rewind(model, optimizer)

    net = _wrap(model, cfg, device, dist)
    pin = device.type == "cuda"
    loader = train_loader(data, batch_size=cfg.batch_size, seed=cfg.seed, start=progress.step, stop=total,
                          num_workers=num_workers, pin_memory=pin, rank=dist.rank, world_size=dist.world_size,
                          device=device)
    sampler = loader.batch_sampler
    val_world = dist.world_size if task.shards_evaluation else 1
    evaluation_loader = val_loader(data, batch_size=cfg.eval_batch_size, num_workers=num_workers,
                                   pin_memory=pin, rank=dist.rank, world_size=val_world, device=device)
    scalars = ScalarLog(log_dir, progress.step)
    t0 = time.perf_counter()
    metrics: dict[str, float] = {}
    postfix: dict[str, str] = {}
    headline = task.headline

    def seconds() -> float:
        return progress.seconds_before + time.perf_counter() - t0

    def log_evaluation() -> None:
        nonlocal metrics
        dist.broadcast_buffers(model)
        metrics = evaluate(model, task, evaluation_loader, device, amp, dist)
        progress.history.append(_history_row(progress.step, plan, progress.sums, progress.count, metrics,
                                             progress.last_lr, seconds()))
        progress.sums, progress.count = {}, 0
        scalars.evaluation(progress.step, metrics)
        if dist.is_main:
            write_history(workdir / HISTORY_FILE, progress.history)
        if headline in metrics:
            postfix[headline] = f"{metrics[headline]:.4g}"
            bar.set_postfix(postfix, refresh=False)

    with tqdm(total=total, initial=progress.step, desc=desc or None, disable=None if dist.is_main else True,
              dynamic_ncols=True, unit="it") as bar, contextlib.closing(scalars):
        for batch in loader:
            progress.last_lr = apply_lr(optimizer, plan.schedule, progress.step)
            weight = sampler.shard_weight(progress.step)  # 1.0 single-process: the loss is unchanged
            with amp.autocast():
                terms = task.loss(net, batch, device)
            values = _check_finite(terms, progress.step, total, ckpt, dist, weight / dist.world_size)
            optimizer.zero_grad(set_to_none=True)
            amp.scaler.scale(terms["loss"] * weight).backward()
            if enforcer is not None:
                enforcer.mask_grads()
            amp.scaler.step(optimizer)
            amp.scaler.update()
            if enforcer is not None:
                enforcer.after_step(optimizer)
            task.after_step(model)
            progress.step += 1
            for k, v in values.items():
                progress.sums[k] = progress.sums.get(k, 0.0) + v
            progress.count += 1
            scalars.train(progress.step, values, progress.last_lr)
            postfix["loss"] = f"{values['loss']:.4g}"
            bar.set_postfix(postfix, refresh=False)
            bar.update(1)

            step = progress.step
            if on_rewind is not None and rewind_step == step:
                on_rewind(model, optimizer)
            stop = on_step is not None and on_step(step, model)
            if step == total or stop or _due(step, plan.eval_every):
                log_evaluation()
            if stop:
                break
            if step < total and _due(step, plan.checkpoint_every):
                dist.broadcast_buffers(model)
                rng = merge_rank_rng(dist.all_gather(capture_rng()))
                if dist.is_main:
                    scaler = amp.scaler.state_dict() if amp.scaler.is_enabled() else {}
                    save_checkpoint(ckpt, model=model, optimizer=optimizer, step=step, rng=rng,
                                    extra=progress.to_extra(fingerprint, seconds(), scaler))
        if not progress.history or progress.history[-1]["step"] != progress.step:
            log_evaluation()  # a level with nothing left to train (start_step == total)

    return TrainResult(metrics=metrics, history=progress.history, steps=progress.step - start_step,
                       final_step=progress.step, seconds=seconds())
