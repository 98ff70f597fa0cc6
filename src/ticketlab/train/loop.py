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
from typing import Any, Callable, Optional, Protocol, Collection

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
from ticketlab.stop import StopFlag, Stopped
from ticketlab.train.tensorboard import ScalarLog


class Enforcer(Protocol):
    """What the loop needs from `ticketlab.sparsity.enforce.MaskEnforcer`."""

    def zero_weights(self) -> None: ...
    def mask_grads(self) -> None: ...
    def after_step(self, optimizer: Optimizer) -> None: ...
    def mask_optimizer_state(self, optimizer: Optimizer) -> None: ...


RewindHook = Callable[[int, nn.Module, Optimizer], None]  # (step, model, optimizer) at each rewind step
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


def _stop_requested(stop: Optional[StopFlag], dist: Dist, device: torch.device) -> bool:
    """Whether to stop at this step boundary; under DDP every rank stops where any one was signalled."""
    if stop is None:
        return False
    if not dist.enabled:
        return stop.requested
    return bool(dist.all_reduce_sum(torch.tensor([float(stop.requested)], device=device)).item() > 0)


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


@dataclass
class LevelRun:
    """How one level runs, beyond what it trains: where it starts and what it calls on the way.

    - `start_step > 0` is late resetting: schedule and data order continue from that step.
    - `optimizer_state` (an `optimizer.state_dict()`) is loaded into the fresh optimizer.
    - `on_rewind(step, model, optimizer)` is called once the step counter equals each of
      `rewind_steps` (0 = before the first update); a resumed run does not call it again for the
      steps it is already past.
      Snapshot with copies: the objects keep training after the call.
    - `on_step(step, model)` is called after every update (after `on_rewind`); returning True
      ends the level there (evaluated, like the last step), e.g. an early-bird stop.
    - `dist` (under torchrun): train with DDP; only rank 0 writes. Every rank must train.
    - `log_dir`: TensorBoard scalars go there (rank 0, `cfg.tensorboard`).
    - `stop` (`ticketlab.stop`): once a signal raised it, the next step boundary writes the checkpoint
      and raises `Stopped`; rerunning resumes there.
    """

    start_step: int = 0
    optimizer_state: Optional[dict] = None
    rewind_steps: Collection[int] = ()
    on_rewind: Optional[RewindHook] = None
    on_step: Optional[StepHook] = None
    desc: str = ""
    dist: Dist = SINGLE
    log_dir: Optional[Path] = None
    stop: Optional[StopFlag] = None


@dataclass
class LevelRequest:
    """One level's training: `model` trained for `task` on `data` under `cfg`, in `workdir`
    (checkpoint, history), pruned weights kept at zero by `enforcer`, run as `run` says."""

    model: nn.Module
    task: Task
    data: DataBundle
    cfg: TrainConfig
    workdir: Path
    enforcer: Optional[Enforcer] = None
    num_workers: int = 0
    run: LevelRun = field(default_factory=LevelRun)


def train_level(request: LevelRequest) -> TrainResult:
    """Train `request.model` from `run.start_step` to `cfg.duration`; resume from
    `workdir/checkpoint.safetensors` when it exists.

    Evaluates every `cfg.eval_every` steps and at the end, checkpoints every `cfg.checkpoint_every`
    steps, writes `workdir/history.csv`. The checkpoint is left in place; delete it with
    `clear_checkpoint(workdir)` once the level's results are saved.
    """
    workdir = Path(request.workdir)
    if request.run.dist.is_main:
        workdir.mkdir(parents=True, exist_ok=True)
    with deterministic_mode(request.cfg.deterministic):
        return _Level(request, workdir).train()


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


class _Level:
    """One level in flight: set up (fresh or resumed), then step, evaluate and checkpoint."""

    def __init__(self, request: LevelRequest, workdir: Path) -> None:
        self.req, self.run, self.cfg = request, request.run, request.cfg
        self.model, self.task, self.dist = request.model, request.task, request.run.dist
        self.device = resolve_device(self.cfg.device)
        self.plan = plan_level(self.cfg, len(request.data.train), self.dist.world_size)  # type: ignore[arg-type]
        if not 0 <= self.run.start_step <= self.plan.total:
            raise TicketlabError(f"start step {self.run.start_step} is outside the level's 0…{self.plan.total} steps "
                                 f"(train.duration={self.cfg.duration})")
        self.workdir = workdir
        self.ckpt = workdir / CHECKPOINT_FILE
        self.log_dir = self.run.log_dir if self.cfg.tensorboard and self.dist.is_main else None
        self.metrics: dict[str, float] = {}
        self.postfix: dict[str, str] = {}

    # -- setup ----------------------------------------------------------------------------------

    def _fingerprint(self) -> dict[str, Any]:
        """What a checkpoint must have been written with to resume this level."""
        cfg = self.cfg
        return {"total_steps": self.plan.total, "steps_per_epoch": self.plan.steps_per_epoch,
                "batch_size": cfg.batch_size, "seed": cfg.seed, "start_step": self.run.start_step,
                "optimizer": cfg.optimizer, "world_size": self.dist.world_size}

    def _start(self) -> bool:
        """Optimizer, AMP and progress, fresh or from the checkpoint; returns whether it resumed."""
        model, cfg, run = self.model, self.cfg, self.run
        model.to(self.device)
        model.train()
        self.optimizer = build_optimizer([p for p in model.parameters() if p.requires_grad], cfg)
        if run.optimizer_state is not None:
            load_optimizer_state(self.optimizer, run.optimizer_state, where="rewind optimizer state")
        self.amp = amp_for(self.device, cfg.amp, cfg.amp_dtype)
        resumed = self.ckpt.exists()
        self.dist.same_everywhere(resumed, f"whether {self.ckpt} exists (the run dir must be on a filesystem "
                                           "every node sees)")
        if resumed:
            step, extra = load_checkpoint(self.ckpt, model, self.optimizer, rank=self.dist.rank)
            self.progress = _Progress.from_extra(step, extra, self._fingerprint(), self.ckpt)
            if extra.get("scaler"):
                self.amp.scaler.load_state_dict(extra["scaler"])
            if self.dist.is_main:
                write_history(self.workdir / HISTORY_FILE, self.progress.history)  # drops rows after the checkpoint
        else:
            seed_everything(derive_seed(cfg.seed, "train", run.start_step))
            self.progress = _Progress(step=run.start_step, last_lr=self.optimizer.param_groups[0]["initial_lr"]
                                      * self.plan.schedule.factor(max(run.start_step - 1, 0)))
        enforcer = self.req.enforcer
        if enforcer is not None:
            enforcer.zero_weights()
            enforcer.mask_optimizer_state(self.optimizer)
        if run.on_rewind is not None and self.progress.step in run.rewind_steps and not resumed:
            run.on_rewind(self.progress.step, model, self.optimizer)
        return resumed

    def _loaders(self) -> tuple[Any, Any]:
        """This rank's training batches from the current step, and its validation slice."""
        cfg, dist, pin = self.cfg, self.dist, self.device.type == "cuda"
        train = train_loader(self.req.data, batch_size=cfg.batch_size, seed=cfg.seed, start=self.progress.step,
                             stop=self.plan.total, num_workers=self.req.num_workers, pin_memory=pin,
                             rank=dist.rank, world_size=dist.world_size, device=self.device)
        val_world = dist.world_size if self.task.shards_evaluation else 1
        val = val_loader(self.req.data, batch_size=cfg.eval_batch_size, num_workers=self.req.num_workers,
                         pin_memory=pin, rank=dist.rank, world_size=val_world, device=self.device)
        return train, val

    # -- the loop -------------------------------------------------------------------------------

    def _seconds(self) -> float:
        return self.progress.seconds_before + time.perf_counter() - self.t0

    def _step(self, net: nn.Module, batch: Any, weight: float) -> dict[str, float]:
        """One optimizer update on `batch`; returns the loss terms as floats."""
        progress, optimizer, amp, enforcer = self.progress, self.optimizer, self.amp, self.req.enforcer
        progress.last_lr = apply_lr(optimizer, self.plan.schedule, progress.step)
        with amp.autocast():
            terms = self.task.loss(net, batch, self.device)
        values = _check_finite(terms, progress.step, self.plan.total, self.ckpt, self.dist,
                               weight / self.dist.world_size)
        optimizer.zero_grad(set_to_none=True)
        amp.scaler.scale(terms["loss"] * weight).backward()
        if enforcer is not None:
            enforcer.mask_grads()
        amp.scaler.step(optimizer)
        amp.scaler.update()
        if enforcer is not None:
            enforcer.after_step(optimizer)
        self.task.after_step(self.model)
        progress.step += 1
        for k, v in values.items():
            progress.sums[k] = progress.sums.get(k, 0.0) + v
        progress.count += 1
        self.scalars.train(progress.step, values, progress.last_lr)
        return values

    def _evaluate(self, loader: Any, bar: Any) -> None:
        progress = self.progress
        self.dist.broadcast_buffers(self.model)
        self.metrics = evaluate(self.model, self.task, loader, self.device, self.amp, self.dist)
        progress.history.append(_history_row(progress.step, self.plan, progress.sums, progress.count, self.metrics,
                                             progress.last_lr, self._seconds()))
        progress.sums, progress.count = {}, 0
        self.scalars.evaluation(progress.step, self.metrics)
        if self.dist.is_main:
            write_history(self.workdir / HISTORY_FILE, progress.history)
        headline = self.task.headline
        if headline in self.metrics:
            self.postfix[headline] = f"{self.metrics[headline]:.4g}"
            bar.set_postfix(self.postfix, refresh=False)

    def _checkpoint(self, step: int) -> None:
        self.dist.broadcast_buffers(self.model)
        rng = merge_rank_rng(self.dist.all_gather(capture_rng()))
        if self.dist.is_main:
            scaler = self.amp.scaler.state_dict() if self.amp.scaler.is_enabled() else {}
            save_checkpoint(self.ckpt, model=self.model, optimizer=self.optimizer, step=step, rng=rng,
                            extra=self.progress.to_extra(self._fingerprint(), self._seconds(), scaler))

    def train(self) -> TrainResult:
        self._start()
        run, plan, progress = self.run, self.plan, self.progress
        net = _wrap(self.model, self.cfg, self.device, self.dist)
        loader, evaluation_loader = self._loaders()
        sampler = loader.batch_sampler
        self.scalars = ScalarLog(self.log_dir, progress.step)
        self.t0 = time.perf_counter()
        with tqdm(total=plan.total, initial=progress.step, desc=run.desc or None,
                  disable=None if self.dist.is_main else True, dynamic_ncols=True, unit="it") as bar, \
                contextlib.closing(self.scalars):
            for batch in loader:
                values = self._step(net, batch, sampler.shard_weight(progress.step))  # weight 1.0 single-process
                self.postfix["loss"] = f"{values['loss']:.4g}"
                bar.set_postfix(self.postfix, refresh=False)
                bar.update(1)
                step = progress.step
                if run.on_rewind is not None and step in run.rewind_steps:
                    run.on_rewind(step, self.model, self.optimizer)
                stop = run.on_step is not None and run.on_step(step, self.model)
                if step == plan.total or stop or _due(step, plan.eval_every):
                    self._evaluate(evaluation_loader, bar)
                if stop:
                    break
                if step < plan.total and _due(step, plan.checkpoint_every):
                    self._checkpoint(step)
                if step < plan.total and _stop_requested(run.stop, self.dist, self.device):
                    if not _due(step, plan.checkpoint_every):
                        self._checkpoint(step)
                    raise Stopped(run.stop.signame or "a signal to another process",  # type: ignore[union-attr]
                                  f"{self.workdir} checkpointed at step {step} of {plan.total}")
            if not progress.history or progress.history[-1]["step"] != progress.step:
                self._evaluate(evaluation_loader, bar)  # a level with nothing left to train (start_step == total)
        return TrainResult(metrics=self.metrics, history=progress.history, steps=progress.step - run.start_step,
                           final_step=progress.step, seconds=self._seconds())
