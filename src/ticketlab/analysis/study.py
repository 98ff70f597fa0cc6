"""A study directory (`ticketlab sweep`) as data, and its report sections: the table of cells (with
paper 001 Table 3's columns for the module-group preset) and one curve per swept setting — the metric
at each cell's last level against the setting, mean ± std over seeds (late resetting is 001 Fig. 2b,
rounds of pruning 001 Fig. 2d).

Layout: `STUDY/study.json` (spec, axes, cells with their overrides, shown values and parameter
counts), `STUDY/cells/<name>/` (run dirs), `STUDY/aggregate.csv` (per series and level).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from ticketlab.analysis import tables
from ticketlab.analysis.curve_figures import SweepCurve, plot_sweep
from ticketlab.analysis.curve_sections import curve_blocks
from ticketlab.analysis.page import Block
from ticketlab.analysis.runs import Run, Stat, aggregate, group_series, is_matching, mean_std, series_identity
from ticketlab.atomic import atomic_write_bytes
from ticketlab.config import dense_part
from ticketlab.errors import TicketlabError

STUDY_FILE = "study.json"
AGGREGATE_FILE = "aggregate.csv"
CELLS_DIR = "cells"
SEED_AXIS = "train.seed"
# Table 3's check-mark columns → the groups each stands for ("Box, Cls head": the FPN layout's
# box_head + box_predictor, the C4 layout's box_predictor; a model has those it has).
MODULE_COLUMNS: dict[str, tuple[str, ...]] = {"base": ("base",), "top": ("top",), "rpn": ("rpn",),
                                              "box_head": ("box_head", "box_predictor")}


@dataclass(frozen=True)
class StudyDir:
    path: Path
    spec: dict
    axes: list[str]
    cells: list[dict]

    def finished(self) -> list[Path]:
        return [self.path / CELLS_DIR / c["name"] for c in self.cells if c["finished"]]


def is_study(path: Path) -> bool:
    return (Path(path) / STUDY_FILE).is_file()


def load_study_dir(path: Path) -> StudyDir:
    file = Path(path) / STUDY_FILE
    try:
        data = json.loads(file.read_text())
        study = StudyDir(path=Path(path), spec=data["spec"], axes=list(data["axes"]), cells=list(data["cells"]))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise TicketlabError(f"{file}: not a study file written by `ticketlab sweep` ({e.__class__.__name__})") from None
    if not study.finished():
        raise TicketlabError(f"{path}: no finished cell yet; run `ticketlab sweep` first")
    return study


def paper_headings(studies: Sequence[StudyDir]) -> dict[Path, str]:
    """Each finished cell (resolved path) of a study that names its figure → "Paper <paper> — ", the
    prefix of the run-level sections (COCO breakdowns, errors, convergence) drawn from it."""
    return {cell.resolve(): f"Paper {s.spec['paper']} — " for s in studies if s.spec.get("paper")
            for cell in s.finished()}


def expand_studies(paths: Sequence[Path]) -> tuple[list[Path], list[StudyDir]]:
    """Run directories with each study directory replaced by its finished cells, and the studies."""
    runs: list[Path] = []
    studies: list[StudyDir] = []
    for p in paths:
        if is_study(p):
            studies.append(load_study_dir(p))
            runs += studies[-1].finished()
        else:
            runs.append(p)
    return runs, studies


@dataclass(frozen=True)
class Row:
    """The cells of one setting (all axes but the seed), summarised at their last common level."""
    values: dict[str, str]
    level: int
    runs: list[Run]
    params: dict
    metric: Stat | None
    dense: Stat | None
    network_sparsity: float | None
    metric_name: str = "metric"  # what `metric` and `dense` are the mean of
    higher_is_better: bool = True

    @property
    def matching(self) -> Optional[bool]:
        if self.level == 0 or self.metric is None or self.dense is None:
            return None
        return is_matching(self.metric.mean, self.dense, self.higher_is_better)


def _rows(study: StudyDir, runs_by_path: dict[Path, Run], metric: Optional[str] = None) -> list[Row]:
    groups: dict[tuple, list[dict]] = {}
    for cell in study.cells:
        if cell["finished"]:
            key = tuple((a, cell["values"][a]) for a in study.axes if a != SEED_AXIS)
            groups.setdefault(key, []).append(cell)
    rows = []
    for key, cells in groups.items():
        runs = [runs_by_path[(study.path / CELLS_DIR / c["name"]).resolve()] for c in cells]
        level = min(max(r.levels) for r in runs)
        head = metric or runs[0].headline

        def stat(lv: int, k: str | None) -> Stat | None:
            vals = [r.levels[lv][k] for r in runs if lv in r.levels and k in r.levels[lv]]
            return mean_std(vals) if vals else None

        net = stat(level, "sparsity_network")
        rows.append(Row(values=dict(key), level=level, runs=runs, params=cells[0].get("params", {}),
                        metric=stat(level, head), dense=stat(0, head), network_sparsity=net.mean if net else None,
                        metric_name=head or "metric",
                        higher_is_better=runs[0].record.higher_is_better_for(head) if runs[0].record and head else True))
    return rows


def _ms(s: Stat | None) -> str:
    if s is None:
        return "—"
    return f"{s.mean:.4f}" + (f" (±{s.std:.4f})" if s.std is not None else "")


def _table(study: StudyDir, rows: Sequence[Row]) -> tuple[list[str], list[list[object]]]:
    axes = [a for a in study.axes if a != SEED_AXIS]
    modules = study.spec.get("preset") == "module_groups"
    head = rows[0].metric_name
    header = ([*MODULE_COLUMNS] if modules else []) + axes + [
        "Param %", "network sparsity", "level", "seeds", f"{head} mean (std)", "dense mean (std)", "matching"]
    out = []
    for r in rows:
        scope = [] if r.params.get("scope", 1) == 0 else r.runs[0].config.get("prune.scope") or []
        marks = ["✓" if any(g in scope for g in groups) else "–" for groups in MODULE_COLUMNS.values()] \
            if modules else []
        p = r.params
        share = 100.0 * p["scope"] / p["network"] if p.get("network") else None
        verdict = "—" if r.matching is None else ("yes" if r.matching else "no")
        out.append(marks + [r.values[a] for a in axes] + [
            share, None if r.network_sparsity is None else 100.0 * r.network_sparsity, r.level,
            " ".join(str(x.seed) for x in r.runs), _ms(r.metric), _ms(r.dense), verdict])
    return header, out


def _own_dense(rows: Sequence[Row], head: str) -> list[Stat | None]:
    """Each row's dense reference: level 0 of every cell of the study that shares the row's config but
    `prune.*` (its dense model, whatever the prune axes say), one value per seed (cells that share a
    dense level hold the same one), mean ± std over seeds. A study whose cells differ in the model
    (001 Fig. 3: ResNet-18 vs ResNet-50) thus compares each backbone with its own dense network."""
    per_seed: dict[str, dict[int, list[float]]] = {}
    keys = []
    for row in rows:
        key = repr(sorted(dense_part(series_identity(row.runs[0])).items()))
        keys.append(key)
        for run in row.runs:
            if 0 in run.levels and head in run.levels[0]:
                per_seed.setdefault(key, {}).setdefault(run.seed, []).append(run.levels[0][head])
    pooled = {k: mean_std(mean_std(v).mean for v in seeds.values()) for k, seeds in per_seed.items()}
    return [pooled.get(k) for k in keys]


def _shown(study: StudyDir, axis: str, value: str) -> str:
    """An axis value in a legend: `key=value` for a config-key axis; a named axis's value (its mapping,
    shown as `backbone=resnet50`) as it is, not prefixed with the axis name again."""
    values = study.spec.get("grid", {}).get(axis) or [None]
    return value if isinstance(values[0], dict) else f"{axis}={value}"


def _sweep_blocks(out: Path, study: StudyDir, rows: Sequence[Row], tag: str, data: list[str],
                  written: list[Path]) -> list[Block]:
    axes = [a for a in study.axes if a != SEED_AXIS and a != "modules"]
    head = rows[0].metric_name
    dense = _own_dense(rows, head)
    blocks = []
    for axis in axes:
        xs = list(dict.fromkeys(row.values[axis] for row in rows))
        if len(xs) < 2:
            continue
        others = [a for a in study.axes if a not in (axis, SEED_AXIS)]
        lines: dict[str, dict[str, tuple[Stat, Stat | None]]] = {}
        for row, own in zip(rows, dense):
            label = ", ".join(_shown(study, a, row.values[a]) for a in others) or head
            if row.metric is not None:
                lines.setdefault(label, {})[row.values[axis]] = (row.metric, own)
        curves = [SweepCurve(label, [_pair(pts[x][0]) if x in pts else None for x in xs],
                             [_pair(pts[x][1]) if x in pts else None for x in xs]) for label, pts in lines.items()]
        name = f"{tag}sweep_{''.join(c if c.isalnum() else '_' for c in axis)}"
        written.append(tables.write_csv(out / f"{name}.csv", _sweep_table(axis, head, xs, curves)))
        written.append(plot_sweep(xs, curves, out / f"{name}.png", x_name=axis, metric=head,
                                  title=f"{head} at the last level vs {axis}"))
        blocks.append(Block(heading=f"{head} vs {axis}", image=f"{name}.png", data=[f"{name}.csv", *data],
                            caption=f"{head} at each cell's last pruning level against {axis} (late resetting: "
                                    f"paper 001 Fig. 2b; rounds of pruning: Fig. 2d), mean ± 1 std over seeds; "
                                    f"dashed line and band: the dense (level 0) mean ± std over seeds of the cells "
                                    f"of {study.path.name} that share the line's configuration but prune.* (its "
                                    f"own dense model; grey when every line shares one)."))
    return blocks


def _pair(s: Stat | None) -> tuple[float, float] | None:
    return None if s is None else (s.mean, s.std or 0.0)


def _sweep_table(axis: str, head: str, xs: Sequence[str], curves: Sequence[SweepCurve]) -> tables.Table:
    """The sweep figure's numbers: per line and value of the axis, the metric and its dense reference."""
    def ms(p: tuple[float, float] | None) -> list[object]:
        return [None, None] if p is None else list(p)
    header = ["line", axis, f"{head} mean", f"{head} std", "dense mean", "dense std"]
    return header, [[c.label, x, *ms(m), *ms(d)] for c in curves for x, m, d in zip(xs, c.metric, c.dense)]


def study_sections(out: Path, study: StudyDir, runs: Sequence[Run], written: list[Path],
                   metric: Optional[str] = None) -> list[Block]:
    """The cells table and the sweep curves of one study (its runs are among `runs`), judged on
    `metric` (default: the headline)."""
    rows = _rows(study, {r.path.resolve(): r for r in runs}, metric)
    tag = "".join(c if c.isalnum() else "_" for c in study.path.name) + "_"
    data = [f"{tag}cells.csv"]
    header, body = _table(study, rows)
    written.append(tables.write_csv(out / data[0], (header, body)))
    if (study.path / AGGREGATE_FILE).is_file():
        data.append(f"{tag}{AGGREGATE_FILE}")
        written.append(out / data[1])
        atomic_write_bytes(written[-1], (study.path / AGGREGATE_FILE).read_bytes())
    what = ("paper 001 Table 3: each module group pruned or not (✓); Param % = the share of the network's "
            "parameters in the pruned groups" if study.spec.get("preset") == "module_groups"
            else "one row per setting; Param % = the share of the network's parameters in the pruning scope")
    paper = study.spec.get("paper")
    named = f"Paper {paper} — study {study.path.name}" if paper else f"Study {study.path.name}"
    table = Block(heading=named, data=data, table=(header, body),
                  paragraphs=[f"{len(study.cells)} cells over axes {', '.join(study.axes)} ({what}). Metric and "
                              "network sparsity at the last level every seed finished; matching = mean ≥ dense "
                              "mean − 1 std of the same setting."])
    sweeps = _sweep_blocks(out, study, rows, tag, data, written)
    if paper:
        sweeps = [dataclasses.replace(b, heading=f"Paper {paper} — {b.heading}") for b in sweeps]
    return [table, *_ticket_curves(out, study, rows, tag, data[-1], written, metric), *sweeps]


def _ticket_curves(out: Path, study: StudyDir, rows: Sequence[Row], tag: str, data: str, written: list[Path],
                   metric: Optional[str]) -> list[Block]:
    """A named study whose cells prune in rounds (paper 001 Fig. 1, 2a, 2e) draws its own ticket curves
    — metric vs sparsity per setting — under its figure's heading."""
    paper = study.spec.get("paper")
    runs = [r for row in rows for r in row.runs]
    if not paper or max(row.level for row in rows) < 2:
        return []
    series = group_series(runs)
    return curve_blocks(out, series, [aggregate(s, metric) for s in series], data, written, metric,
                        tag=tag, heading=f"Paper {paper} — ")
