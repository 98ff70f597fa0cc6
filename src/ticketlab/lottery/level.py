"""Train one ticket (a mask + the weights it restarts from) into a level or branch directory.

Shared by IMP levels and by branches (`reinit`, `random_mask`, …): both are "start from these
weights, keep this mask, train, write the contract files". The mask and start weights are written
before training, `final.safetensors` after, and `metrics.json` last, so the directory is finished
exactly when `metrics.json` exists. Detection tasks also leave the final evaluation's val
detections in `detections.json` (COCO results format), which `ticketlab report` breaks down.
Under torchrun every rank trains, rank 0 writes, and the mask each rank computed is checked to be
the same everywhere before any training starts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from ticketlab.atomic import atomic_save_safetensors
from ticketlab.lottery.experiment import Experiment
from ticketlab.rundir import DETECTIONS_FILE, FINAL_FILE, MASK_FILE, START_FILE, write_metrics
from ticketlab.sparsity import MaskEnforcer, save_mask, sparsity_report
from ticketlab.sparsity.enforce import with_followers
from ticketlab.train import clear_checkpoint, train_level
from ticketlab.train.loop import LevelRequest, LevelRun
from ticketlab.train.checkpoint import content_digest


def masked_state(state: dict[str, torch.Tensor], mask: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`state` with every masked-out weight set to exactly 0 (other entries untouched)."""
    out = dict(state)
    for name, keep in mask.items():
        out[name] = state[name] * keep.to(device=state[name].device, dtype=state[name].dtype)
    return out


def sparsity_metrics(exp: Experiment, mask: dict[str, torch.Tensor]) -> dict:
    """Scope sparsity over the mask; network sparsity over every weight held at zero, followers
    included (MoCo's key encoder is pruned like the query encoder, so it counts as pruned)."""
    report = sparsity_report(exp.model, mask, exp.built.groups)
    enforced = with_followers(mask, exp.built.followers)
    network = report if len(enforced) == len(mask) else sparsity_report(exp.model, enforced)
    units = exp.granularity().units(mask)  # channel tickets: the channels left of the prunable groups
    channels = {"channels_kept": sum(int(a.sum()) for a in units.values()),
                "channels_scope": sum(a.numel() for a in units.values())} if units else {}
    return {
        "sparsity_scope": report.scope_sparsity,
        "sparsity_network": network.network_sparsity,
        "kept_scope": report.scope_kept,
        "scope_size": report.scope_numel,
        **channels,
    }


@dataclass
class TicketStart:
    """What a level or branch trains: `start_state` ⊙ `mask`, into `out_dir`; `identity` (e.g.
    {"level": 3}) leads its metrics row."""

    out_dir: Path
    mask: dict[str, torch.Tensor]
    start_state: dict[str, torch.Tensor]
    identity: dict


def train_ticket(exp: Experiment, ticket: TicketStart, run: Optional[LevelRun] = None) -> dict:
    """Train `exp.model` on `ticket` (run as `run` says: start step, hooks, …); return its metrics.

    The start weights are a pure function of the run's files, so a resumed level rewrites the same
    `mask.safetensors` / `rewind.safetensors` and the training loop continues from its checkpoint.
    """
    run = run or LevelRun()
    out_dir, mask, dist = ticket.out_dir, ticket.mask, run.dist
    enforced = exp.enforced_mask(mask)
    dist.same_everywhere(content_digest(mask, ""), f"the mask of {out_dir}")
    start = masked_state(ticket.start_state, enforced)

    def write_start() -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        save_mask(out_dir / MASK_FILE, mask)
        atomic_save_safetensors(out_dir / START_FILE, start)

    dist.on_main(write_start)
    model = exp.model
    model.load_state_dict(start)
    params = dict(model.named_parameters())  # a frozen norm's held γ/β are buffers: zeroed once, above
    enforcer = MaskEnforcer(model, {n: m for n, m in enforced.items() if n in params})
    t0 = time.time()
    result = train_level(LevelRequest(model, exp.task, exp.data, exp.cfg.train, out_dir, enforcer,
                                      exp.cfg.data.num_workers, run))
    metrics = {**ticket.identity, **sparsity_metrics(exp, mask), **result.metrics,
               "steps": result.steps, "seconds": round(time.time() - t0, 2)}

    def write_results() -> None:
        atomic_save_safetensors(out_dir / FINAL_FILE, {k: v.detach() for k, v in model.state_dict().items()})
        if exp.task.saves_detections:  # the final evaluation's val detections, for the report
            exp.task.save_detections(out_dir / DETECTIONS_FILE)
        write_metrics(out_dir, metrics)
        clear_checkpoint(out_dir)

    dist.on_main(write_results)
    return metrics
