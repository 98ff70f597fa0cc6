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
from pathlib import Path
from typing import Callable, Optional

import torch
from torch import nn

from ticketlab.atomic import atomic_save_safetensors
from ticketlab.lottery.experiment import Experiment
from ticketlab.rundir import DETECTIONS_FILE, write_metrics
from ticketlab.sparsity import MaskEnforcer, save_mask, sparsity_report
from ticketlab.sparsity.enforce import with_followers
from ticketlab.train import clear_checkpoint, train_level
from ticketlab.train.loop import StepHook
from ticketlab.train.checkpoint import content_digest
from ticketlab.train.distributed import SINGLE, Dist


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
    return {
        "sparsity_scope": report.scope_sparsity,
        "sparsity_network": network.network_sparsity,
        "kept_scope": report.scope_kept,
        "scope_size": report.scope_numel,
    }


def train_ticket(
    exp: Experiment,
    out_dir: Path,
    *,
    mask: dict[str, torch.Tensor],
    start_state: dict[str, torch.Tensor],
    identity: dict,
    optimizer_state: Optional[dict] = None,
    on_rewind: Optional[Callable[[nn.Module, torch.optim.Optimizer], None]] = None,
    rewind_step: Optional[int] = None,
    start_step: int = 0,
    desc: str = "",
    on_step: Optional[StepHook] = None,
    dist: Dist = SINGLE,
    log_dir: Optional[Path] = None,
) -> dict:
    """Train `exp.model` from `start_state` ⊙ `mask` into `out_dir`; return its metrics.

    The start weights are a pure function of the run's files, so a resumed level rewrites the same
    `mask.safetensors` / `rewind.safetensors` and the training loop continues from its checkpoint.
    `identity` (e.g. {"level": 3}) leads the metrics row. `log_dir`: TensorBoard scalars.
    """
    enforced = with_followers(mask, exp.built.followers)
    dist.same_everywhere(content_digest(mask, ""), f"the mask of {out_dir}")
    start = masked_state(start_state, enforced)

    def write_start() -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        save_mask(out_dir / "mask.safetensors", mask)
        atomic_save_safetensors(out_dir / "rewind.safetensors", start)

    dist.on_main(write_start)
    model = exp.model
    model.load_state_dict(start)
    enforcer = MaskEnforcer(model, enforced)
    t0 = time.time()
    result = train_level(
        model, exp.task, exp.data, exp.cfg.train,
        workdir=out_dir, enforcer=enforcer, start_step=start_step,
        optimizer_state=optimizer_state, rewind_step=rewind_step, on_rewind=on_rewind,
        desc=desc, num_workers=exp.cfg.data.num_workers, on_step=on_step, dist=dist, log_dir=log_dir,
    )
    metrics = {**identity, **sparsity_metrics(exp, mask), **result.metrics,
               "steps": result.steps, "seconds": round(time.time() - t0, 2)}

    def write_results() -> None:
        atomic_save_safetensors(out_dir / "final.safetensors", {k: v.detach() for k, v in model.state_dict().items()})
        if exp.task.saves_detections:  # the final evaluation's val detections, for the report
            exp.task.save_detections(out_dir / DETECTIONS_FILE)
        write_metrics(out_dir, metrics)
        clear_checkpoint(out_dir)

    dist.on_main(write_results)
    return metrics
