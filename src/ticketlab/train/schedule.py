"""Optimizer and learning-rate schedule, built from a `TrainConfig`.

The schedule is a pure function of the step (`lr_factor`), applied by setting each group's lr to
`initial_lr * factor(step)` before every step. Its whole state is therefore the step counter: a
resumed or late-reset run needs no scheduler state to land on the same learning rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import torch
from torch.optim import Optimizer

from ticketlab.config import TrainConfig, parse_steps
from ticketlab.errors import TicketlabError


SCHEDULES = ("constant", "multistep", "cosine", "poly")


def lr_factor(step: int, *, total: int, warmup: int = 0, schedule: str = "constant",
              milestones: Sequence[int] = (), gamma: float = 0.1, power: float = 0.9,
              floor: float = 0.0) -> float:
    """Multiplier of the peak lr for the update taken at `step` (0-based).

    Warmup rises linearly 1/warmup, 2/warmup, … 1 over the first `warmup` steps and multiplies the
    schedule: `constant` (1), `multistep` (×gamma at every milestone <= step), `cosine` (from 1
    when warmup ends to `floor` at `total`: floor + (1 - floor)·½(1 + cos πp)) or `poly` (from 1 to
    `floor` as floor + (1 - floor)·(1 - p)^power, the "poly" decay of DeepLab and of paper 002's
    Faster R-CNN), where p = (step - warmup) / (total - warmup), clipped to [0, 1]. `floor` is the
    final lr over the peak lr (paper 002's YOLOv4 decays from 1e-4 to 1e-6: floor 0.01).
    """
    span = max(1, total - warmup)
    progress = min(1.0, max(0.0, (step - warmup) / span))
    if schedule == "constant":
        base = 1.0
    elif schedule == "multistep":
        base = gamma ** sum(1 for m in milestones if step >= m)
    elif schedule == "cosine":
        base = floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
    elif schedule == "poly":
        base = floor + (1.0 - floor) * (1.0 - progress) ** power
    else:
        raise TicketlabError(f"train.schedule: {schedule!r} is not one of {', '.join(SCHEDULES)}")
    if warmup > 0 and step < warmup:
        base *= (step + 1) / warmup
    return base


@dataclass(frozen=True)
class LrSchedule:
    """`lr_factor`'s arguments resolved to step counts."""

    total: int
    warmup: int = 0
    schedule: str = "constant"
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    power: float = 0.9
    floor: float = 0.0

    def factor(self, step: int) -> float:
        return lr_factor(step, total=self.total, warmup=self.warmup, schedule=self.schedule,
                         milestones=self.milestones, gamma=self.gamma, power=self.power, floor=self.floor)


def schedule_from_config(cfg: TrainConfig, steps_per_epoch: int) -> LrSchedule:
    """Turn the config's '500it' / '2ep' strings into step counts."""
    total = parse_steps(cfg.duration, steps_per_epoch, key="train.duration")
    return LrSchedule(
        total=total,
        warmup=parse_steps(cfg.warmup, steps_per_epoch, key="train.warmup"),
        schedule=cfg.schedule,
        milestones=tuple(parse_steps(m, steps_per_epoch, key=f"train.milestones[{i}]")
                         for i, m in enumerate(cfg.milestones)),
        gamma=cfg.gamma,
        power=cfg.power,
        floor=cfg.lr_min / cfg.lr if cfg.lr > 0 else 0.0,
    )


def apply_lr(optimizer: Optimizer, schedule: LrSchedule, step: int) -> float:
    """Set every group's lr for the update at `step`; returns the first group's lr."""
    factor = schedule.factor(step)
    for group in optimizer.param_groups:
        group["lr"] = group["initial_lr"] * factor
    return optimizer.param_groups[0]["lr"]


def build_optimizer(params: Iterable[torch.Tensor] | Iterable[dict], cfg: TrainConfig) -> Optimizer:
    """SGD (momentum, nesterov, L2 weight decay), Adam (L2) or AdamW (decoupled decay).

    Each group records its peak lr as `initial_lr`, which `apply_lr` scales.
    """
    params = list(params)
    if cfg.optimizer == "sgd":
        if cfg.nesterov and cfg.momentum <= 0:
            raise TicketlabError("train.nesterov: Nesterov needs train.momentum > 0")
        opt: Optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                                         nesterov=cfg.nesterov, weight_decay=cfg.weight_decay)
    elif cfg.optimizer == "adam":
        opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    elif cfg.optimizer == "adamw":
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        raise TicketlabError(f"train.optimizer: {cfg.optimizer!r} is not one of sgd, adam, adamw")
    for group in opt.param_groups:
        group.setdefault("initial_lr", group["lr"])
    return opt
