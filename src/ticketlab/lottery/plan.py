"""`--plan` of `sweep` and `transfer-matrix`: what will train, what is shared, and what it costs,
before anything runs.

The unit of cost is one dense training of the cell's config. A pruned level costs the share of it
that it trains: all of it when it rewinds to init (or to pretrained weights), (total − k) / total
when it resets late to step k. A masked step costs about what a dense one does (1.015× for
ResNet-50, docs/benchmarks.md), so units translate into time. Level 0 of a `DenseGroup` is one
training however many cells use it; a level 0 with `prune.early_bird_stop` may cost less than 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ticketlab.config import Config, parse_steps
from ticketlab.lottery.shared import DenseGroup
from ticketlab.rundir import RunDir


@dataclass(frozen=True)
class PlanRow:
    name: str
    kind: str         # "dense" (a shared level 0) or "cell"
    trains: str       # what it trains, in words
    trainings: int    # level trainings it runs
    units: float      # their cost in dense trainings
    state: str        # "done", "partial" or "to do"
    dense_from: str = ""  # a cell: the shared dense level it uses ("" = its own)
    members: int = 0      # a shared dense level: the cells that use it


def _unit(value: str) -> str:
    return "ep" if str(value).strip().endswith("ep") else "it"


def _steps_per_epoch(cfg: Config) -> int:
    from ticketlab.data import build_data  # only when duration and rewind point mix epochs and iterations

    return max(1, math.ceil(len(build_data(cfg.data, cfg.task).train) / cfg.train.batch_size))


def pruned_level_units(cfg: Config, steps_per_epoch: Callable[[Config], int] = _steps_per_epoch) -> float:
    """The share of a dense training that one pruned level of `cfg` trains."""
    rewind = cfg.prune.rewind
    if rewind in ("init", "pretrained"):
        return 1.0
    spe = 1 if _unit(rewind) == _unit(cfg.train.duration) else steps_per_epoch(cfg)
    total = parse_steps(cfg.train.duration, spe, key="train.duration")
    return (total - parse_steps(rewind, spe, key="prune.rewind")) / total


def _state(root: Path, levels: int) -> str:
    run = RunDir(root)
    done = sum(run.is_done(level) for level in range(levels + 1))
    return "done" if done == levels + 1 else "partial" if done or (root / "level_00").is_dir() else "to do"


def plan_rows(cells: dict[str, tuple[Config, Path]], groups: dict[str, DenseGroup]) -> list[PlanRow]:
    """One row per shared dense level, then one per cell (name → (config, run dir))."""
    rows = []
    for group in {g.name: g for g in groups.values()}.values():
        rows.append(PlanRow(group.name, "dense", f"level 0 of {len(group.members)} cells", 1, 1.0,
                            _state(group.root, 0), members=len(group.members)))
    for name, (cfg, root) in cells.items():
        levels = cfg.prune.levels
        pruned = f"levels 1–{levels}" if levels > 1 else "level 1" if levels == 1 else ""
        group = groups.get(name)
        own = group is None
        trains = ", ".join(filter(None, ["level 0" if own else f"level 0 from {group.name}", pruned]))
        units = float(own) + (levels * pruned_level_units(cfg) if levels else 0.0)
        rows.append(PlanRow(name, "cell", trains, int(own) + levels, units, _state(root, levels),
                            dense_from="" if own else group.name))
    return rows


def unshared(rows: list[PlanRow]) -> tuple[int, float]:
    """(trainings, units) of the same cells each training its own level 0."""
    cells = [r for r in rows if r.kind == "cell"]
    shared = sum(1 for r in cells if r.dense_from)
    return sum(r.trainings for r in cells) + shared, sum(r.units for r in cells) + shared


def format_plan(rows: list[PlanRow]) -> list[str]:
    width = max(len(r.name) for r in rows)
    trains = max(len(r.trains) for r in rows)
    lines = [f"{'unit':<{width}}  {'kind':<5}  {'trains':<{trains}}  {'units':>6}  state"]
    lines += [f"{r.name:<{width}}  {r.kind:<5}  {r.trains:<{trains}}  {r.units:>6.2f}  {r.state}" for r in rows]
    dense = [r for r in rows if r.kind == "dense"]
    total, units = sum(r.trainings for r in rows), sum(r.units for r in rows)
    alone, alone_units = unshared(rows)
    shared_by = sum(r.members for r in dense)
    lines.append(f"{total} trainings ({len(dense)} shared dense level(s) for {shared_by} cells), "
                 f"{units:.2f} dense-training units; each cell on its own: {alone} trainings, {alone_units:.2f} units")
    return lines
