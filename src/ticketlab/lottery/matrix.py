"""Universality (paper 002 §3–4): masks from several sources, each trained on several target tasks.

A spec (`matrix_spec.py`) names target configs (columns), dense baselines (one per pre-trained θ_p)
and sources (rows: `--set`-style overrides, usually an `init:` transfer, or a whole run whose every
level becomes a row). Every (row, column, seed) is an ordinary run dir `OUT/<row>/<column>/seed_<s>`
made by `run_imp`, so a cut-off matrix resumes where it stopped. The table holds, per cell, the mean ±
std of the target's headline metric at the cell's last level over seeds, and whether it is
*matching*: mean ≥ its baseline's mean − that baseline's std (both papers' criterion; ≤ mean + std for
a metric where lower is better; paper 002 Eq. 1 compares with the dense model from the same θ_p). A row is *universal* when it matches on every
target (paper 002 §3); for a run source, the sparsest universal level is what the paper quotes as
"universally transferable at 59.04%–96.48% sparsity".

Writes OUT/matrix.csv, OUT/matrix.md, OUT/matrix.png (heatmap), and with run sources
OUT/universal.csv and OUT/transfer_curves.png (metric vs the source mask's sparsity, per target);
with targets that list `columns`, OUT/columns.csv (`matrix_columns.py`, paper 001's table form).
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
from ticketlab.atomic import atomic_write_bytes, atomic_write_text
from ticketlab.config import Config, load_config
from ticketlab.errors import TicketlabError
from ticketlab.lottery.launch import LaunchConfig, launch_cells
from ticketlab.lottery.matrix_columns import column_rows, write_columns
from ticketlab.lottery.matrix_spec import DENSE, MatrixSpec, Row, RunSource, load_spec
from ticketlab.lottery.shared import SHARED_DIR, DenseGroup, finished, plan_groups, run_member, run_named
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


def _source_sparsity(row: Row) -> Optional[float]:
    """The scope sparsity the source level itself reports (a run source's row), else None."""
    if row.level_dir is None:
        return None
    path = row.level_dir / "metrics.json"
    try:
        return float(json.loads(path.read_text())["sparsity_scope"])
    except (OSError, ValueError, KeyError, TypeError):
        raise TicketlabError(f"{path}: unreadable metrics file (expected sparsity_scope)") from None


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
            matching = is_matching(mean, stats[row.baseline or row.name], record.higher_is_better_for(metric))
            rows.append({"source": row.name, "target": column, "metric": metric, "mean": mean, "std": std,
                         "seeds": len(values), "sparsity_scope": sparsity[0], "sparsity_network": sparsity[1],
                         "baseline": row.baseline or row.name, "matching": matching,
                         "run_source": row.source or "", "source_level": "" if row.level is None else row.level,
                         "source_sparsity": _source_sparsity(row)})
    universal = universal_levels(rows, spec)
    write_table(rows, out, universal)
    write_columns(spec, column_rows(spec, cells, slug), Path(out))  # paper 001's table form (targets' columns:)
    return rows


def _column_record(cells: dict[str, tuple[Config, Path]], dense: Row, column: str, seed: int) -> TaskRecord:
    """What the column's task recorded in its dense cell (task.json): the class the data chose, so a
    VOC-format target is judged by VOC07 mAP, not by the task name's default headline."""
    cfg, run_dir = cells[f"{slug(dense.name)}/{slug(column)}/seed_{seed}"]
    return RunDir(run_dir).task_record() or task_class(cfg.task).record()


def universal_levels(rows: list[dict], spec: MatrixSpec) -> list[dict]:
    """Per run source: the levels matching on every target, and the sparsest of them (None if none)."""
    targets = list(spec.targets)
    out = []
    for name, src in spec.sources.items():
        if not isinstance(src, RunSource):
            continue
        mine = [r for r in rows if r["run_source"] == name]
        levels = sorted({r["source_level"] for r in mine})
        ok = [lv for lv in levels
              if all(r["matching"] for r in mine if r["source_level"] == lv) and
              {r["target"] for r in mine if r["source_level"] == lv} == set(targets)]
        best = ok[-1] if ok else None
        sparsity = next((r["source_sparsity"] for r in mine if r["source_level"] == best), None)
        out.append({"source": name, "baseline": src.baseline, "levels": " ".join(map(str, levels)),
                    "universal_levels": " ".join(map(str, ok)), "sparsest_universal_level": best,
                    "sparsest_universal_sparsity": sparsity})
    return out


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
    note = ["", "✓ = matching: mean ≥ the baseline's mean − 1 std over seeds; universal = matching on every target."]
    for u in universal:
        best = u["sparsest_universal_level"]
        note.append(f"- {u['source']} (vs {u['baseline']}): " + (
            f"universal up to level {best} ({u['sparsest_universal_sparsity']:.2%} of the source's scope pruned); "
            f"universal at levels {u['universal_levels']}" if best is not None else "universal at no level"))
    atomic_write_text(out / "matrix.md", "\n".join(lines) + "\n" + "\n".join(note) + "\n")
    _heatmap(rows, sources, targets, out / "matrix.png")
    if universal:
        atomic_write_text(out / "universal.csv", _csv(list(universal)))
        _curves(rows, targets, out / "transfer_curves.png")


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


def _curves(rows: list[dict], targets: list[str], path: Path) -> None:
    """Paper 002 Fig. 3–5: per target, each run source's metric against its mask's sparsity (band ±1
    std), its baseline dashed, matching levels filled."""
    fig = Figure(figsize=(5.0 * len(targets), 4.2))
    axes = fig.subplots(1, len(targets), squeeze=False)[0]
    for ax, t in zip(axes, targets):
        mine = [r for r in rows if r["target"] == t]
        for i, name in enumerate(dict.fromkeys(r["run_source"] for r in mine if r["run_source"])):
            pts = sorted((r for r in mine if r["run_source"] == name), key=lambda r: r["source_sparsity"])
            x = np.array([100 * r["source_sparsity"] for r in pts])
            y, s = np.array([r["mean"] for r in pts]), np.array([r["std"] for r in pts])
            color = f"C{i % 10}"
            ax.plot(x, y, color=color, label=name)
            ax.fill_between(x, y - s, y + s, color=color, alpha=0.2, linewidth=0)
            ax.scatter(x, y, color=color, facecolors=[color if r["matching"] else "white" for r in pts], zorder=3)
            base = next(r for r in mine if r["source"] == pts[0]["baseline"])
            ax.axhline(base["mean"], color=color, linestyle="--", linewidth=0.9)
        ax.set_title(t, fontsize=9)
        ax.set_xlabel("source mask's scope sparsity (%)")
        ax.set_ylabel(f"{mine[0]['metric']} (mean ± 1 std over seeds)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("transfer curves: filled = matching its dense baseline (dashed)", fontsize=10)
    fig.tight_layout()
    atomic_write_bytes(path, _figure_bytes(fig))
