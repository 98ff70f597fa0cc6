"""Universality (paper 002 §3–4): masks from several sources, each trained on several target tasks.

A spec (`matrix_spec.py`) names target configs (columns), dense baselines (one per pre-trained θ_p)
and sources (rows: `--set`-style overrides, usually an `init:` transfer, or a whole run whose every
level becomes a row). Every (row, column, seed) is an ordinary run dir `OUT/<row>/<column>/seed_<s>`
made by `run_imp`, so a cut-off matrix resumes where it stopped. The table holds, per cell, the mean ±
std of the target's headline metric at the cell's last level over seeds, and whether it is
*matching*: mean ≥ its baseline's mean − that baseline's std (both papers' criterion; ≤ mean + std for
a metric where lower is better; paper 002 Eq. 1 compares with the dense model from the same θ_p). A row is *universal* when it matches on every
target (paper 002 §3); for a run source, the sparsest level up to which every level is universal
(`universal_levels`) is what the paper quotes as "universally transferable at 59.04%–96.48% sparsity".

Writes OUT/matrix.csv, OUT/matrix.md, OUT/matrix.png (heatmap), and with run sources
OUT/universal.csv and OUT/transfer_curves.png (metric vs the source mask's sparsity, per target);
with targets that list `columns`, OUT/columns.csv (`matrix_columns.py`, paper 001's table form);
OUT/matrix.json (the spec's `paper:`, targets and seeds) marks the directory for `ticketlab report`.
"""

from __future__ import annotations

import csv
import io
import json
import re
import statistics
from pathlib import Path
from typing import Callable, Optional

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ticketlab.analysis.runs import Stat, is_matching
from ticketlab.analysis.transfer_figures import plot_transfer_curves
from ticketlab.atomic import atomic_write_bytes, atomic_write_text
from ticketlab.config import Config, load_config
from ticketlab.errors import TicketlabError
from ticketlab.lottery.launch import LaunchConfig, launch_cells
from ticketlab.lottery.matrix_columns import column_rows, write_columns
from ticketlab.lottery.matrix_spec import DENSE, MatrixSpec, Row, RunSource, load_spec
from ticketlab.lottery.shared import (SHARED_DIR, DenseGroup, check_cells, finished, plan_groups, run_member,
                                      run_named)
from ticketlab.rundir import RunDir, TaskRecord
from ticketlab.stop import StopFlag
from ticketlab.tasks import task_class

__all__ = ["DENSE", "MatrixSpec", "load_spec", "run_matrix", "write_table", "universal_levels"]


def slug(name: str) -> str:
    """A row or column name as a directory name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "_"


def cell_config(spec: MatrixSpec, row: Row, column: str, seed: int):
    target = spec.targets[column]
    extra = [o.replace("{target}", column) for o in row.overrides]
    return load_config(target.config, target.overrides + extra + [f"train.seed={seed}"])


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _source_mask(row: Row) -> tuple[Optional[float], Optional[int]]:
    """The scope sparsity and kept weights the source level itself reports (a run source's row), else None."""
    if row.level_dir is None:
        return None, None
    path = row.level_dir / "metrics.json"
    try:
        metrics = json.loads(path.read_text())
        return float(metrics["sparsity_scope"]), int(metrics["kept_scope"])
    except (OSError, ValueError, KeyError, TypeError):
        raise TicketlabError(f"{path}: unreadable metrics file (expected sparsity_scope, kept_scope)") from None


def matrix_cells(spec: MatrixSpec, out: Path) -> dict[str, tuple[Config, Path]]:
    """`row/column/seed_<s>` → (config, run dir), in table order."""
    return {f"{slug(row.name)}/{slug(column)}/seed_{seed}":
            (cell_config(spec, row, column, seed), Path(out) / slug(row.name) / slug(column) / f"seed_{seed}")
            for column in spec.targets for row in spec.rows() for seed in spec.seeds}


def matrix_groups(cells: dict[str, tuple[Config, Path]], out: Path) -> dict[str, DenseGroup]:
    """Cells that differ only in `prune.*` (e.g. rows that change the rewind point) share level 0."""
    return plan_groups({name: cfg for name, (cfg, _) in cells.items()}, Path(out) / SHARED_DIR)


def run_matrix_unit(spec: MatrixSpec, out: Path, name: str, *, log: Callable[[str], None] = print,
                    stop: Optional[StopFlag] = None) -> None:
    """Run one cell (`row/column/seed_<s>`) or shared dense level (`dense-<key>`) in this process."""
    cells = matrix_cells(spec, out)
    if not run_named(name, cells, matrix_groups(cells, out), log=log, stop=stop):
        raise TicketlabError(f"--cell {name}: not a cell or shared dense level of {spec.path} "
                             f"(see `ticketlab transfer-matrix {spec.path} --plan`)")


def _run_cells(spec: MatrixSpec, out: Path, log: Callable[[str], None], stop: Optional[StopFlag],
               launch: LaunchConfig) -> dict[str, tuple[Config, Path]]:
    """Every cell run (or resumed): here one after another, or launched as processes (`launch.py`)."""
    cells = matrix_cells(spec, out)
    check_cells(cells)
    groups = matrix_groups(cells, out)
    if not (launch.slurm or launch.workers > 1):
        for name, (cfg, root) in cells.items():
            log(f"[{name}] {root}")
            run_member(cfg, root, groups.get(name), log=log, stop=stop)
        return cells
    if spec.path is None:
        raise TicketlabError("transfer-matrix: launching cells as processes needs the spec file's path")
    errors = launch_cells(list(cells), groups, lambda n: finished(*cells[n]),
                          lambda n: ["transfer-matrix", str(spec.path.resolve()), "--out", str(Path(out).resolve()),
                                     "--cell", n], launch, Path(out), log=log, stop=stop)
    if errors:
        name, error = next(iter(errors.items()))
        raise TicketlabError(f"{len(errors)} of {len(cells)} cells did not finish ({name}: {error}); rerun to retry them")
    return cells


def run_matrix(spec: MatrixSpec, out: Path, *, log: Callable[[str], None] = print, stop: Optional[StopFlag] = None,
               launch: Optional[LaunchConfig] = None) -> list[dict]:
    """Run (or resume) every cell, then write the tables; returns the rows (one per row × column).
    `launch` (default: the spec's) runs cells as separate processes when it asks for workers or SLURM."""
    cells = _run_cells(spec, out, log, stop, launch or spec.launch)
    rows = []
    plan = spec.rows()
    for column, target in spec.targets.items():
        record = _column_record(cells, plan[0], column, spec.seeds[0])
        metric = target.metric or record.headline
        stats: dict[str, Stat] = {}
        for row in plan:
            values = []
            for seed in spec.seeds:
                cfg, run_dir = cells[f"{slug(row.name)}/{slug(column)}/seed_{seed}"]
                last = RunDir(run_dir).read_metrics(cfg.prune.levels)
                if metric not in last:
                    raise TicketlabError(f"{run_dir}: metric {metric!r} not in its metrics ({', '.join(last)})")
                values.append(float(last[metric]))
                sparsity = (last["sparsity_scope"], last["sparsity_network"])
            mean, std = _mean_std(values)
            stats[row.name] = Stat(mean, std, len(values))
            source = _source_mask(row)
            matching = is_matching(mean, stats[row.baseline or row.name], record.higher_is_better_for(metric))
            rows.append({"source": row.name, "target": column, "metric": metric, "mean": mean, "std": std,
                         "seeds": len(values), "sparsity_scope": sparsity[0], "sparsity_network": sparsity[1],
                         "baseline": row.baseline or row.name, "matching": matching,
                         "run_source": row.source or "", "source_level": "" if row.level is None else row.level,
                         "source_sparsity": source[0], "source_kept": source[1]})
    universal = universal_levels(rows, spec)
    write_table(rows, out, universal)
    write_columns(spec, column_rows(spec, cells, slug), Path(out))  # matrix.json; paper 001's table form (columns:)
    return rows


def _column_record(cells: dict[str, tuple[Config, Path]], dense: Row, column: str, seed: int) -> TaskRecord:
    """What the column's task recorded in its dense cell (task.json): the class the data chose, so a
    VOC-format target is judged by VOC07 mAP, not by the task name's default headline."""
    cfg, run_dir = cells[f"{slug(dense.name)}/{slug(column)}/seed_{seed}"]
    return RunDir(run_dir).task_record() or task_class(cfg.task).record()


def universal_levels(rows: list[dict], spec: MatrixSpec) -> list[dict]:
    """Per run source: the levels that each match on every target (`universal_levels`), and the
    sparsest level up to which the source is universal (`sparsest_universal_level`, None if none):
    it and every less sparse level of the row match on every target. That is paper 002's reading
    (§4 A1): "(m_Img, θ_Img) transfers without sacrificing performance by sparsity 86.58% to CIFAR-100"
    claims every sparsity up to 86.58%, and the universal sparsity of Table 1's four natural-image
    tasks, (86.58%, 86.58%, 89.26%), is the least of the per-task ones. A level that matches everywhere
    only after a failing one is listed in `universal_levels` but does not extend the range; the first
    failing level and the targets it fails on are `first_failing_level` / `first_failing_targets`."""
    targets = list(spec.targets)
    out = []
    for name, src in spec.sources.items():
        if not isinstance(src, RunSource):
            continue
        mine = [r for r in rows if r["run_source"] == name]
        levels = sorted({r["source_level"] for r in mine})
        failing = {lv: [t for t in targets if not any(r["matching"] for r in mine
                                                      if r["source_level"] == lv and r["target"] == t)]
                   for lv in levels}   # a target without a cell at that level fails it too
        ok = [lv for lv in levels if not failing[lv]]
        broken = next((lv for lv in levels if failing[lv]), None)
        upto = [lv for lv in levels if broken is None or lv < broken]
        best = upto[-1] if upto else None
        sparsity = next((r["source_sparsity"] for r in mine if r["source_level"] == best), None)
        out.append({"source": name, "baseline": src.baseline, "levels": " ".join(map(str, levels)),
                    "universal_levels": " ".join(map(str, ok)), "sparsest_universal_level": best,
                    "sparsest_universal_sparsity": sparsity, "first_failing_level": broken,
                    "first_failing_targets": ", ".join(failing[broken]) if broken is not None else ""})
    return out


def universal_note(u: dict) -> str:
    """One line of `matrix.md` for a run source's verdict (`universal_levels`)."""
    best, broken = u["sparsest_universal_level"], u["first_failing_level"]
    fails = f"level {broken} fails on {u['first_failing_targets']}" if broken is not None else ""
    if best is None:
        head = f"universal at no level ({fails})"
    else:
        head = (f"universal at every level up to {best} ({u['sparsest_universal_sparsity']:.2%} of the source's "
                f"scope pruned)" + (f"; {fails}" if fails else ""))
    return f"- {u['source']} (vs {u['baseline']}): {head}; each level's own verdict, universal at: " \
           f"{u['universal_levels'] or 'none'}"


def _csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def write_table(rows: list[dict], out: Path, universal: list[dict] = ()) -> None:
    """OUT/matrix.csv (one line per cell), OUT/matrix.md (rows × columns), OUT/matrix.png; with run
    sources also OUT/universal.csv and OUT/transfer_curves.png."""
    atomic_write_text(out / "matrix.csv", _csv(rows))
    sources = list(dict.fromkeys(r["source"] for r in rows))
    targets = list(dict.fromkeys(r["target"] for r in rows))
    cell = {(r["source"], r["target"]): r for r in rows}
    lines = ["| source | baseline | " + " | ".join(f"{t} ({cell[(sources[0], t)]['metric']})" for t in targets)
             + " | universal |", "|---|---|" + "---|" * (len(targets) + 1)]
    for s in sources:
        texts = []
        for t in targets:
            r = cell[(s, t)]
            texts.append(f"{r['mean']:.4f} ± {r['std']:.4f} {'✓' if r['matching'] else '✗'} "
                         f"(net. sparsity {r['sparsity_network']:.1%})")
        every = all(cell[(s, t)]["matching"] for t in targets)
        lines.append(f"| {s} | {cell[(s, targets[0])]['baseline']} | " + " | ".join(texts)
                     + f" | {'✓' if every else '✗'} |")
    note = ["", "✓ = matching: mean ≥ the baseline's mean − 1 std over seeds; universal = matching on every target; "
            "a run source is universal up to a level when that level and every less sparse one are."]
    note.extend(universal_note(u) for u in universal)
    atomic_write_text(out / "matrix.md", "\n".join(lines) + "\n" + "\n".join(note) + "\n")
    _heatmap(rows, sources, targets, out / "matrix.png")
    if universal:
        atomic_write_text(out / "universal.csv", _csv(list(universal)))
        plot_transfer_curves(rows, targets, out / "transfer_curves.png")


def _figure_bytes(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def _heatmap(rows: list[dict], sources: list[str], targets: list[str], path: Path) -> None:
    """Each cell's mean minus its baseline's mean, ✓ on matching cells."""
    cell = {(r["source"], r["target"]): r for r in rows}
    delta = np.array([[cell[(s, t)]["mean"] - cell[(cell[(s, t)]["baseline"], t)]["mean"] for t in targets]
                      for s in sources])
    fig = Figure(figsize=(1.8 + 1.6 * len(targets), 1.0 + 0.5 * len(sources)))
    ax = fig.add_subplot()
    bound = float(np.abs(delta).max()) or 1.0
    image = ax.imshow(delta, cmap="RdBu", vmin=-bound, vmax=bound, aspect="auto")
    ax.set_xticks(range(len(targets)), targets)
    ax.set_yticks(range(len(sources)), sources)
    for i, s in enumerate(sources):
        for j, t in enumerate(targets):
            ax.text(j, i, f"{delta[i, j]:+.3f}{' ✓' if cell[(s, t)]['matching'] else ''}", ha="center", va="center")
    fig.colorbar(image, ax=ax, label="metric − baseline")
    ax.set_title("mask transfer: metric relative to each row's dense baseline")
    fig.tight_layout()
    atomic_write_bytes(path, _figure_bytes(fig))
