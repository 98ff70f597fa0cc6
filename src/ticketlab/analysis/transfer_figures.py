"""Paper 002 Figs. 3-5 and 9 as drawn from a transfer matrix's rows: per target, each run source's metric
against its mask's sparsity (Figs. 3-5) or against the weights its mask keeps (Fig. 9, where sources of
different model sizes meet), band ±1 std over seeds, its dense baseline dashed, matching levels filled.

A row is one line of `matrix.csv` as a mapping (`lottery/matrix.py` writes it; `run_source`,
`source_sparsity`, `source_kept` are set on the rows of run sources).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from ticketlab.analysis.figures import _save

# x axis → (the row key it reads, the scale factor, the axis label, log scale)
AXES = {"sparsity": ("source_sparsity", 100.0, "source mask's scope sparsity (%)", False),
        "kept": ("source_kept", 1.0, "weights the source mask keeps (count)", True)}


def plot_transfer_curves(rows: Sequence[Mapping], targets: Sequence[str], path: Path, *, x: str = "sparsity",
                         title: str = "transfer curves: filled = matching its dense baseline (dashed)") -> Path:
    key, scale, label, log = AXES[x]
    fig = Figure(figsize=(5.0 * len(targets), 4.2))
    axes = fig.subplots(1, len(targets), squeeze=False)[0]
    for ax, t in zip(axes, targets):
        mine = [r for r in rows if r["target"] == t]
        for i, name in enumerate(dict.fromkeys(r["run_source"] for r in mine if r["run_source"])):
            pts = sorted((r for r in mine if r["run_source"] == name), key=lambda r: float(r[key]))
            xs = np.array([scale * float(r[key]) for r in pts])
            y, s = np.array([float(r["mean"]) for r in pts]), np.array([float(r["std"]) for r in pts])
            color = f"C{i % 10}"
            ax.plot(xs, y, color=color, label=name)
            ax.fill_between(xs, y - s, y + s, color=color, alpha=0.2, linewidth=0)
            ax.scatter(xs, y, color=color, facecolors=[color if _true(r["matching"]) else "white" for r in pts],
                       zorder=3)
            base = next(r for r in mine if r["source"] == pts[0]["baseline"])
            ax.axhline(float(base["mean"]), color=color, linestyle="--", linewidth=0.9)
        if log:
            ax.set_xscale("log")
        ax.set_title(t, fontsize=9)
        ax.set_xlabel(label)
        ax.set_ylabel(f"{mine[0]['metric']} (mean ± 1 std over seeds)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def _true(value) -> bool:
    """`matching` as written (bool) or read back from the CSV ("True"/"False")."""
    return value is True or value == "True"
