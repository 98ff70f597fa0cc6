"""Universality (paper 002 §3–4): masks from several sources, each trained on several target tasks.

A spec (YAML) names target configs (columns) and sources (rows: `--set`-style overrides, usually an
`init:` transfer such as `init.source=runs/simclr/level_05`). Every (row, column, seed) is an ordinary
run dir `OUT/<row>/<column>/seed_<s>` made by `run_imp`, so a cut-off matrix resumes where it
stopped; a `dense` row (the target config as is) is always run as the baseline. The table holds, per
cell, the mean ± std of the target's headline metric at the run's last level over seeds, and whether
it is *matching*: mean ≥ dense mean − dense std (both papers' criterion).

    out: runs/universality              # optional; --out overrides
    seeds: [0, 1, 2]
    targets:
      digits: {config: configs/digits_resnet.yaml, set: [train.duration=5ep]}
    sources:
      m_P supervised: [init.source=runs/sup/level_05, init.mode=mask]
      m_T: ["init.source=runs/imp_{target}/level_05", init.mode=mask]   # {target} = the column name

Writes OUT/matrix.csv, OUT/matrix.md and OUT/matrix.png (heatmap).
"""

from __future__ import annotations

import csv
import io
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ticketlab.analysis.runs import HEADLINES
from ticketlab.atomic import atomic_write_bytes, atomic_write_text
from ticketlab.config import load_config
from ticketlab.errors import TicketlabError
from ticketlab.yaml_file import read_yaml_mapping
from ticketlab.lottery.imp import run_imp

DENSE = "dense"


@dataclass
class Target:
    config: str
    overrides: list[str] = field(default_factory=list)
    metric: Optional[str] = None  # null = the task's headline metric


@dataclass
class MatrixSpec:
    targets: dict[str, Target]
    sources: dict[str, list[str]]
    seeds: list[int]
    out: Optional[str] = None


def _strings(value, where: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TicketlabError(f"{where}: expected a list of key=value strings, got {value!r}")
    return value


def load_spec(path: Path) -> MatrixSpec:
    data = read_yaml_mapping(path, "transfer-matrix spec", "a mapping with keys targets, sources, seeds, out")
    unknown = set(data) - {"targets", "sources", "seeds", "out"}
    if unknown:
        raise TicketlabError(f"{path}: unknown key(s) {', '.join(sorted(unknown))} (expected targets, sources, "
                             "seeds, out)")
    targets = {}
    for name, t in (data.get("targets") or {}).items():
        if not isinstance(t, dict) or not isinstance(t.get("config"), str) or set(t) - {"config", "set", "metric"}:
            raise TicketlabError(f"{path}: targets.{name}: expected {{config: FILE, set: [...], metric: NAME}}")
        targets[str(name)] = Target(t["config"], _strings(t.get("set"), f"{path}: targets.{name}.set"), t.get("metric"))
    sources = {str(k): _strings(v, f"{path}: sources.{k}") for k, v in (data.get("sources") or {}).items()}
    if not targets or not sources:
        raise TicketlabError(f"{path}: needs at least one entry under targets and one under sources")
    if DENSE in sources:
        raise TicketlabError(f"{path}: sources.{DENSE} is the baseline row, run always; pick another name")
    seeds = data.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds):
        raise TicketlabError(f"{path}: seeds: expected a list of integers, got {seeds!r}")
    return MatrixSpec(targets, sources, seeds, data.get("out"))


def slug(name: str) -> str:
    """A row or column name as a directory name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "_"


def cell_config(spec: MatrixSpec, row: str, column: str, seed: int):
    target = spec.targets[column]
    extra = [o.replace("{target}", column) for o in spec.sources.get(row, [])]
    return load_config(target.config, target.overrides + extra + [f"train.seed={seed}"])


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def run_matrix(spec: MatrixSpec, out: Path, *, log: Callable[[str], None] = print) -> list[dict]:
    """Run (or resume) every cell, then write the table; returns its rows (one per row × column)."""
    rows = []
    for column, target in spec.targets.items():
        per_row: dict[str, list[float]] = {}
        metric = target.metric
        for row in [DENSE, *spec.sources]:
            values = []
            for seed in spec.seeds:
                cfg = cell_config(spec, row, column, seed)
                metric = metric or HEADLINES.get(cfg.task)
                if metric is None:
                    raise TicketlabError(f"targets.{column}.metric: task {cfg.task!r} has no known headline; "
                                         "name the metric")
                run_dir = out / slug(row) / slug(column) / f"seed_{seed}"
                log(f"[{row} → {column}, seed {seed}] {run_dir}")
                last = run_imp(cfg, run_dir, log=log)[-1]
                if metric not in last:
                    raise TicketlabError(f"{run_dir}: metric {metric!r} not in its metrics ({', '.join(last)})")
                values.append(float(last[metric]))
                sparsity = (last["sparsity_scope"], last["sparsity_network"])
            per_row[row] = values
            mean, std = _mean_std(values)
            rows.append({"source": row, "target": column, "metric": metric, "mean": mean, "std": std,
                         "seeds": len(values), "sparsity_scope": sparsity[0], "sparsity_network": sparsity[1]})
        dense_mean, dense_std = _mean_std(per_row[DENSE])
        for r in rows:
            if r["target"] == column:
                r["matching"] = r["mean"] >= dense_mean - dense_std
    write_table(rows, out)
    return rows


def write_table(rows: list[dict], out: Path) -> None:
    """OUT/matrix.csv (one line per cell), OUT/matrix.md (rows × columns) and OUT/matrix.png."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out / "matrix.csv", buf.getvalue())
    sources = list(dict.fromkeys(r["source"] for r in rows))
    targets = list(dict.fromkeys(r["target"] for r in rows))
    cell = {(r["source"], r["target"]): r for r in rows}
    lines = ["| source | " + " | ".join(f"{t} ({cell[(sources[0], t)]['metric']})" for t in targets) + " |",
             "|---|" + "---|" * len(targets)]
    for s in sources:
        texts = []
        for t in targets:
            r = cell[(s, t)]
            texts.append(f"{r['mean']:.4f} ± {r['std']:.4f} {'✓' if r['matching'] else '✗'} "
                         f"(net. sparsity {r['sparsity_network']:.1%})")
        lines.append(f"| {s} | " + " | ".join(texts) + " |")
    note = "\n✓ = matching: mean ≥ dense mean − 1 std over seeds.\n"
    atomic_write_text(out / "matrix.md", "\n".join(lines) + "\n" + note)
    _heatmap(rows, sources, targets, out / "matrix.png")


def _heatmap(rows: list[dict], sources: list[str], targets: list[str], path: Path) -> None:
    """Each cell's mean minus its column's dense mean, ✓ on matching cells."""
    cell = {(r["source"], r["target"]): r for r in rows}
    delta = np.array([[cell[(s, t)]["mean"] - cell[(DENSE, t)]["mean"] for t in targets] for s in sources])
    fig = Figure(figsize=(1.8 + 1.6 * len(targets), 1.0 + 0.5 * len(sources)))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    bound = float(np.abs(delta).max()) or 1.0
    image = ax.imshow(delta, cmap="RdBu", vmin=-bound, vmax=bound, aspect="auto")
    ax.set_xticks(range(len(targets)), targets)
    ax.set_yticks(range(len(sources)), sources)
    for i, s in enumerate(sources):
        for j, t in enumerate(targets):
            ax.text(j, i, f"{delta[i, j]:+.3f}{' ✓' if cell[(s, t)]['matching'] else ''}", ha="center", va="center")
    fig.colorbar(image, ax=ax, label="metric − dense")
    ax.set_title("mask transfer: metric relative to dense")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    atomic_write_bytes(path, buf.getvalue())
