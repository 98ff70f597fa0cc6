"""`ticketlab sweep STUDY.yaml`: a grid of IMP runs (seeds × strategies × scopes × rewind points ×
schedules …) as one study directory, each cell an ordinary run dir, so every other command works on it.

A study file names a base config, overrides for every cell, and a grid: each axis is a config key
with a list of values, or a free name with a list of mappings of config keys (one cell sets them
all, e.g. a pruning schedule `{prune.rate: 0.8, prune.levels: 1}`). `preset: module_groups` adds the
axis of paper 001 Table 3: all 16 combinations of pruning {base, top, rpn, box heads} (box heads:
box_head+box_predictor on FPN, box_predictor on C4; the empty one trains the dense level only).

    config: ../configs/digits_lenet.yaml     # relative to the study file
    set: [train.duration=4ep, prune.levels=3]
    grid:
      train.seed: [0, 1, 2]
      prune.rewind: [init, 1ep]
      schedule: [{prune.rate: 0.5, prune.levels: 1}, {prune.rate: 0.293, prune.levels: 2}]

Cells are named from their overrides (`OUT/cells/<name>/`). Running the sweep again skips finished
cells and resumes the others. `OUT/study.json` (spec, cells, parameter counts) and `OUT/aggregate.csv`
(mean ± std per series and level, matching verdict) are rewritten after every cell.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable


from ticketlab.analysis import tables
from ticketlab.analysis.runs import aggregate, group_series, load_runs
from ticketlab.analysis.study import AGGREGATE_FILE, CELLS_DIR, MODULE_COLUMNS, STUDY_FILE
from ticketlab.atomic import atomic_write_json
from ticketlab.config import Config, load_config
from ticketlab.errors import TicketlabError
from ticketlab.yaml_file import read_yaml_mapping
from ticketlab.lottery.imp import run_imp
from ticketlab.lottery.info import group_table, model_for_info
from ticketlab.rundir import RunDir

def module_group_axis(cfg: Config) -> list[dict]:
    """The 16 cells of paper 001 Table 3: every subset of the four modules, each module the groups
    of `MODULE_COLUMNS` that `cfg`'s model has (C4: box_predictor alone is the "Box, Cls head")."""
    # the group names do not depend on the label count: without the data on this machine, any will do
    built, _ = model_for_info(replace(cfg, model=replace(cfg.model, num_classes=cfg.model.num_classes or 2)))
    columns = [tuple(g for g in groups if g in built.groups) for groups in MODULE_COLUMNS.values()]
    for name, kept in zip(MODULE_COLUMNS, columns):
        if not kept:
            raise TicketlabError(f"preset: module_groups needs the R-CNN groups of paper 001 Table 3; this "
                                 f"model has none for {name!r} (its groups: {', '.join(built.groups)})")
    cells = []
    for chosen in itertools.product((False, True), repeat=len(columns)):
        scope = [g for on, groups in zip(chosen, columns) if on for g in groups]
        cells.append({"prune.scope": scope} if scope else {"prune.scope": None, "prune.levels": 0})
    return cells


PRESETS: dict[str, tuple[str, Callable[[Config], list[dict]]]] = {"module_groups": ("modules", module_group_axis)}


def _fmt(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, list):
        return "+".join(map(str, value)) or "none"
    return str(value)


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "._=+-" else "_" for c in text)


@dataclass(frozen=True)
class Cell:
    name: str
    overrides: list[str]               # --set strings, after the study's own
    values: dict[str, str]             # axis → the value shown in tables and figure ticks


@dataclass
class Study:
    path: Path                          # the study file
    config: Path
    common: list[str] = field(default_factory=list)
    axes: dict[str, list[Any]] = field(default_factory=dict)
    preset: str | None = None

    def spec(self) -> dict:
        return {"config": str(self.config), "set": self.common, "grid": self.axes, "preset": self.preset}

    def cells(self) -> list[Cell]:
        names = list(self.axes)
        cells = []
        for combo in itertools.product(*(self.axes[a] for a in names)):
            overrides, shown, parts = [], {}, []
            for axis, value in zip(names, combo):
                if isinstance(value, dict):
                    overrides += [f"{k}={json.dumps(v)}" for k, v in value.items()]
                    shown[axis] = ",".join(f"{k.split('.')[-1]}={_fmt(v)}" for k, v in value.items())
                else:
                    overrides.append(f"{axis}={json.dumps(value)}")
                    shown[axis] = _fmt(value)
                parts.append(f"{axis.split('.')[-1]}={shown[axis]}")
            cells.append(Cell(name=_safe("__".join(parts)), overrides=overrides, values=shown))
        return cells


def load_study(path: Path) -> Study:
    path = Path(path)
    data = read_yaml_mapping(path, "study", "a mapping with keys config, set, grid, preset")
    unknown = sorted(set(data) - {"config", "set", "grid", "preset"})
    if unknown:
        raise TicketlabError(f"{path}: unknown study key {unknown[0]!r} (expected config, set, grid, preset)")
    if not isinstance(data.get("config"), str):
        raise TicketlabError(f"{path}: config: expected the path of a YAML config, relative to the study file")
    common = data.get("set") or []
    if not isinstance(common, list) or not all(isinstance(s, str) and "=" in s for s in common):
        raise TicketlabError(f"{path}: set: expected a list of key=value strings")
    grid = data.get("grid") or {}
    if not isinstance(grid, dict):
        raise TicketlabError(f"{path}: grid: expected a mapping of axis → list of values")
    for axis, values in grid.items():
        if not isinstance(values, list) or not values:
            raise TicketlabError(f"{path}: grid.{axis}: expected a non-empty list of values")
        if any(isinstance(v, dict) for v in values) and not all(isinstance(v, dict) for v in values):
            raise TicketlabError(f"{path}: grid.{axis}: mix of mappings and plain values; use one kind")
    preset = data.get("preset")
    if preset is not None:
        if preset not in PRESETS:
            raise TicketlabError(f"{path}: preset: {preset!r} is not one of {', '.join(PRESETS)}")
    config = (path.parent / data["config"]).resolve()
    if preset is not None:
        axis, values = PRESETS[preset]
        grid = {axis: values(load_config(config, list(common))), **grid}
    study = Study(path=path, config=config, common=list(common), axes=dict(grid), preset=preset)
    for cell in study.cells():  # every cell's config is checked before anything trains
        cell_config(study, cell)
    return study


def cell_config(study: Study, cell: Cell) -> Config:
    try:
        return load_config(study.config, [*study.common, *cell.overrides])
    except TicketlabError as e:
        raise TicketlabError(f"{study.path}: cell {cell.name}: {e}") from None


def _params(cfg: Config) -> dict[str, int]:
    _, total, scope = group_table(cfg)
    return {"network": total, "scope": scope if cfg.prune.levels > 0 else 0}


def write_study_files(out: Path, study: Study, cells: list[dict]) -> None:
    atomic_write_json(out / STUDY_FILE, {"format": "ticketlab-study/1", "spec": study.spec(),
                                         "axes": list(study.axes), "cells": cells})
    done = [out / CELLS_DIR / c["name"] for c in cells if c["finished"]]
    if done:
        series = group_series(load_runs(done))
        tables.write_csv(out / AGGREGATE_FILE, tables.series_summary(series, [aggregate(s) for s in series]))


def run_study(path: Path, out: Path, *, log: Callable[[str], None] = print) -> list[dict]:
    """Run (or resume) every cell of the study file `path` under `out`; returns the cell records."""
    study = load_study(path)
    out = Path(out)
    old = json.loads((out / STUDY_FILE).read_text()) if (out / STUDY_FILE).is_file() else {}
    if old and old.get("spec") != json.loads(json.dumps(study.spec())):
        raise TicketlabError(f"{out} holds a study with a different spec; use a new --out, or restore {path}")
    known = {c["name"]: c["params"] for c in old.get("cells", []) if "params" in c}
    out.mkdir(parents=True, exist_ok=True)
    cells = study.cells()
    records: list[dict] = []
    for i, cell in enumerate(cells):
        cfg = cell_config(study, cell)
        run = RunDir(out / CELLS_DIR / cell.name)
        finished = all(run.is_done(lv) for lv in range(cfg.prune.levels + 1))
        log(f"cell {i + 1}/{len(cells)} {cell.name}: " + ("finished, skipped" if finished else "running"))
        if not finished:
            run_imp(cfg, run.root, log=log)
        records.append({"name": cell.name, "overrides": cell.overrides, "values": cell.values, "finished": True,
                        "params": known.get(cell.name) or _params(cfg)})
        pending = [{"name": c.name, "overrides": c.overrides, "values": c.values, "finished": False}
                   for c in cells[i + 1:]]
        write_study_files(out, study, records + pending)
    return records
