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
(mean ± std per series and level, matching verdict) are rewritten after every cell. Cells that differ
only in `prune.*` train their dense level once (`shared.py`, under `OUT/shared/`); `--plan` shows
what will train (`plan.py`); `launch:` (or `--workers`, `--slurm`) runs cells side by side
(`launch.py`), each as `ticketlab sweep STUDY --out OUT --cell NAME`.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Optional


from ticketlab.analysis import tables
from ticketlab.analysis.runs import aggregate, check_metric, group_series, load_runs
from ticketlab.analysis.study import AGGREGATE_FILE, CELLS_DIR, MODULE_COLUMNS, STUDY_FILE
from ticketlab.atomic import atomic_write_json
from ticketlab.config import Config, from_dict, load_config
from ticketlab.errors import TicketlabError
from ticketlab.path_keys import moved_path, relative_to, same_location
from ticketlab.yaml_file import read_paper, read_yaml_mapping
from ticketlab.lottery.info import group_table, model_for_info
from ticketlab.lottery.launch import LaunchConfig, launch_cells
from ticketlab.lottery.plan import PlanRow, plan_rows
from ticketlab.lottery.shared import SHARED_DIR, DenseGroup, check_cells, finished, plan_groups, run_named
from ticketlab.stop import StopFlag

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
STUDY_KEYS = ("config", "set", "grid", "preset", "launch", "paper")


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
    launch: LaunchConfig = field(default_factory=LaunchConfig)  # where cells run, not what they are
    paper: str | None = None            # the figure or table it reproduces, e.g. "001 Fig. 2a: ..."

    def spec(self) -> dict:
        return {"config": str(self.config), "set": self.common, "grid": self.axes, "preset": self.preset,
                "paper": self.paper}

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
    data = read_yaml_mapping(path, "study", f"a mapping with keys {', '.join(STUDY_KEYS)}")
    unknown = sorted(set(data) - set(STUDY_KEYS))
    if unknown:
        raise TicketlabError(f"{path}: unknown study key {unknown[0]!r} (expected {', '.join(STUDY_KEYS)})")
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
    paper = read_paper(data, path, "study")
    preset = data.get("preset")
    if preset is not None:
        if preset not in PRESETS:
            raise TicketlabError(f"{path}: preset: {preset!r} is not one of {', '.join(PRESETS)}")
    config = (path.parent / data["config"]).resolve()
    if preset is not None:
        axis, values = PRESETS[preset]
        grid = {axis: values(load_config(config, list(common))), **grid}
    launch = from_dict(LaunchConfig, data.get("launch") or {}, "launch.")
    study = Study(path=path, config=config, common=list(common), axes=dict(grid), preset=preset, launch=launch,
                  paper=paper)
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


def write_study_files(out: Path, study: Study, cells: list[dict], metric: Optional[str] = None) -> None:
    atomic_write_json(out / STUDY_FILE, {"format": "ticketlab-study/1", "spec": study.spec(),
                                         "relative_to_study_dir": {"config": relative_to(str(study.config), out)},
                                         "axes": list(study.axes), "cells": cells})
    done = [out / CELLS_DIR / c["name"] for c in cells if c["finished"]]
    if done:
        runs = load_runs(done)
        check_metric(runs, metric)
        series = group_series(runs)
        tables.write_csv(out / AGGREGATE_FILE,
                         tables.series_summary(series, [aggregate(s, metric) for s in series], metric))


@dataclass
class StudyRun:
    """A study file resolved against its directory: each cell's config and run dir, and the shared
    dense levels."""

    study: Study
    out: Path
    cells: list[Cell]
    configs: dict[str, Config]
    groups: dict[str, DenseGroup]   # cell name → its shared dense level

    def root(self, name: str) -> Path:
        return self.out / CELLS_DIR / name

    def units(self) -> dict[str, tuple[Config, Path]]:
        return {c.name: (self.configs[c.name], self.root(c.name)) for c in self.cells}

    def plan(self) -> list[PlanRow]:
        return plan_rows(self.units(), self.groups)

    def finished(self, cell: Cell) -> bool:
        return finished(self.configs[cell.name], self.root(cell.name))


def _what_runs(spec: dict) -> dict:
    """A spec without its caption: renaming the figure a study reproduces does not change its cells."""
    return {k: v for k, v in spec.items() if k != "paper"}


def same_spec(old: dict, study: Study, out: Path) -> bool:
    """Whether study.json `old` (in `out`) holds `study`'s spec. Its config file is the same when it is
    at the recorded path or, the study dir having moved with it, at the recorded path relative to the
    study dir (`path_keys.same_location`, the rule every run dir follows)."""
    before, now = _what_runs(old.get("spec") or {}), _what_runs(json.loads(json.dumps(study.spec())))
    relative = (old.get("relative_to_study_dir") or {}).get("config")
    moved = moved_path(relative, out) if isinstance(relative, str) else None
    return ({**before, "config": None} == {**now, "config": None}
            and same_location(before.get("config"), moved, now["config"]))


def open_study(path: Path, out: Path) -> StudyRun:
    study = load_study(path)
    out = Path(out)
    old = json.loads((out / STUDY_FILE).read_text()) if (out / STUDY_FILE).is_file() else {}
    if old and not same_spec(old, study, out):
        raise TicketlabError(f"{out} holds a study with a different spec; use a new --out, or restore {path}")
    cells = study.cells()
    configs = {c.name: cell_config(study, c) for c in cells}
    return StudyRun(study, out, cells, configs, plan_groups(configs, out / SHARED_DIR))


def run_unit(sr: StudyRun, name: str, *, log: Callable[[str], None] = print, stop: Optional[StopFlag] = None) -> None:
    """Run one cell, or one shared dense level (`dense-<key>`), in this process."""
    if not run_named(name, sr.units(), sr.groups, log=log, stop=stop):
        raise TicketlabError(f"--cell {name}: not a cell or shared dense level of {sr.study.path} "
                             f"(see `ticketlab sweep {sr.study.path} --plan`)")


def run_study(path: Path, out: Path, *, log: Callable[[str], None] = print, stop: Optional[StopFlag] = None,
              launch: Optional[LaunchConfig] = None, metric: Optional[str] = None) -> list[dict]:
    """Run (or resume) every cell of the study file `path` under `out`; returns the cell records.
    `launch` (default: the study file's) runs cells as separate processes when it asks for workers or SLURM;
    `metric`: the metric of aggregate.csv's matching verdicts (default: the task's headline)."""
    sr = open_study(path, out)
    check_cells(sr.units())
    sr.out.mkdir(parents=True, exist_ok=True)
    launch = launch or sr.study.launch
    known = _known_params(sr.out)
    if launch.slurm or launch.workers > 1:
        return _launch(sr, launch, known, log, metric, stop)
    records: list[dict] = []
    for i, cell in enumerate(sr.cells):
        done = sr.finished(cell)
        log(f"cell {i + 1}/{len(sr.cells)} {cell.name}: " + ("finished, skipped" if done else "running"))
        if not done:
            run_unit(sr, cell.name, log=log, stop=stop)
        records.append(_record(sr, cell, known, finished=True))
        pending = [_record(sr, c, known, finished=False) for c in sr.cells[i + 1:]]
        write_study_files(sr.out, sr.study, records + pending, metric)
    return records


def _known_params(out: Path) -> dict:
    old = json.loads((out / STUDY_FILE).read_text()) if (out / STUDY_FILE).is_file() else {}
    return {c["name"]: c["params"] for c in old.get("cells", []) if "params" in c}


def _record(sr: StudyRun, cell: Cell, known: dict, *, finished: bool, error: str = "") -> dict:
    record = {"name": cell.name, "overrides": cell.overrides, "values": cell.values, "finished": finished}
    if finished:
        record["params"] = known.get(cell.name) or _params(sr.configs[cell.name])
    if error:
        record["error"] = error
    return record


def _launch(sr: StudyRun, launch: LaunchConfig, known: dict, log: Callable[[str], None],
            metric: Optional[str], stop: Optional[StopFlag]) -> list[dict]:
    units = sr.units()
    errors = launch_cells(list(units), sr.groups, lambda n: finished(*units[n]),
                          lambda n: ["sweep", str(sr.study.path.resolve()), "--out", str(sr.out.resolve()), "--cell", n],
                          launch, sr.out, log=log, stop=stop)
    records = [_record(sr, c, known, finished=sr.finished(c), error=errors.get(c.name, "")) for c in sr.cells]
    write_study_files(sr.out, sr.study, records, metric)
    return records
