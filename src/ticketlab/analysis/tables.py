"""The CSV tables behind the report's figures, as (header, rows) and written atomically.

Every figure in the report comes with the numbers it was drawn from, so a reader can re-plot or
check them without the PNG. Floats are written with full precision (Python's repr), empty cells
mean "not defined" (e.g. the std of a single seed).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np

from ticketlab.analysis.masks import kernel_map, kept_per_layer, zero_kernels
from ticketlab.analysis.runs import LevelStats, Run, Series
from ticketlab.atomic import atomic_write_text
from ticketlab.sparsity.channels import kept_rows

Table = tuple[list[str], list[list[object]]]


def write_csv(path: Path, table: Table) -> Path:
    header, rows = table
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if v is None else v for v in row])
    atomic_write_text(path, buf.getvalue())
    return Path(path)


def _seeds(runs: Sequence[Run]) -> str:
    return " ".join(str(r.seed) for r in runs)


def series_summary(series: Sequence[Series], stats: Sequence[Sequence[LevelStats]],
                   metric: Optional[str] = None) -> Table:
    """One row per (series, level): runs, seeds, mean and std of sparsity and every metric, and the
    verdict on `metric` (default: each series' headline; the `headline` column names it)."""
    keys: list[str] = []
    for st in stats:
        for ls in st:
            keys += [k for k in ls.values if k not in keys]
    header = ["series", "level", "runs", "seeds", "headline", "matching"]
    for k in keys:
        header += [f"{k}_mean", f"{k}_std"]
    rows = []
    for s, st in zip(series, stats):
        for ls in st:
            seeds = _seeds([r for r in s.runs if ls.level in r.levels])
            verdict = None if ls.matching is None else ("yes" if ls.matching else "no")
            row: list[object] = [s.label, ls.level, ls.runs, seeds, metric or s.headline, verdict]
            for k in keys:
                stat = ls.values.get(k)
                row += [stat.mean, stat.std] if stat is not None else [None, None]
            rows.append(row)
    return header, rows


def kept_table(runs: Sequence[Run], masks: Sequence[Mapping], series_of: Mapping[str, str]) -> Table:
    """One row per (run, layer): weights kept, and output channels kept (a channel ticket's channel count)."""
    header = ["run", "series", "seed", "layer", "numel", "kept", "kept_fraction", "channels_kept", "channels"]
    rows = []
    for run, mask in zip(runs, masks):
        for name, frac in kept_per_layer(mask):
            m = mask[name]
            rows.append([run.label, series_of[run.label], run.seed, name, m.numel(), int(m.sum()), frac,
                         *kept_rows(m)])
    return header, rows


def similarity_table(labels: Sequence[str], matrix: np.ndarray) -> Table:
    header = ["run", *labels]
    return header, [[label, *map(float, matrix[i])] for i, label in enumerate(labels)]


def zero_kernel_table(runs: Sequence[Run], masks: Sequence[Mapping]) -> Table:
    """One row per (run, convolution weight): kernels entirely pruned, kernels, their share."""
    header = ["run", "seed", "layer", "zero_kernels", "kernels", "zero_fraction"]
    rows = []
    for run, mask in zip(runs, masks):
        for name, (zero, total) in zero_kernels(mask).items():
            rows.append([run.label, run.seed, name, zero, total, zero / total if total else 0.0])
    return header, rows


def kernel_map_table(runs: Sequence[Run], masks: Sequence[Mapping], layer: str) -> Table:
    """The entirely pruned kernels [out, in] of `layer`, one row each (the rest kept some weight)."""
    header = ["run", "layer", "out_channel", "in_channel"]
    rows = []
    for run, mask in zip(runs, masks):
        for o, i in np.argwhere(kernel_map(mask, layer)):
            rows.append([run.label, layer, int(o), int(i)])
    return header, rows


def level_sparsity(run: Run, level: int) -> Optional[float]:
    v = run.levels.get(level, {}).get("sparsity_scope")
    return float(v) if isinstance(v, (int, float)) else None
