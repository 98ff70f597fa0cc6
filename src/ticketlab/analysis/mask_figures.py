"""Figures of paper 002 §5: mask similarity and zero kernels against sparsity (Fig. 6), the kernel
heatmaps of stages B1–B4 (Fig. 7), and a ticket against its mask controls (Fig. 8). Same conventions
as `figures.py`: `Figure` + Agg, no pyplot state, atomic PNG writes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from ticketlab.analysis.figures import _save
from ticketlab.analysis.mask_curves import StageMap


NO_KERNEL = "#b9d3ee"    # stage maps: no kernel here (between layers, below a narrower layer)


@dataclass(frozen=True)
class Line:
    """One curve: x (sparsity, fraction), mean and std (0 where unknown) of y."""
    label: str
    x: Sequence[float]
    mean: Sequence[float]
    std: Sequence[float]


def _band(ax, i: int, line: Line, **style) -> None:
    x = 100.0 * np.asarray(line.x, dtype=float)
    y, s = np.asarray(line.mean, dtype=float), np.asarray(line.std, dtype=float)
    order = np.argsort(x)
    color = f"C{i % 10}"
    ax.plot(x[order], y[order], marker="o", color=color, label=line.label, **style)
    ax.fill_between(x[order], (y - s)[order], (y + s)[order], color=color, alpha=0.2, linewidth=0)


def _finish(ax, xlabel: str, ylabel: str) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)


def plot_fig6(similarity: Sequence[Line], kernels: Sequence[Line], out_png: Path, *, title: str) -> Path:
    """Top: relative similarity of each pair of series; bottom: zero kernels of each series."""
    fig = Figure(figsize=(6.8, 7.6))
    top, bottom = fig.subplots(2, 1)
    for i, line in enumerate(similarity):
        _band(top, i, line)
    top.set_ylim(0.0, 1.02)
    _finish(top, "trunk sparsity (%)", "relative similarity |m_i ∩ m_j| / |m_i ∪ m_j|")
    for i, line in enumerate(kernels):
        _band(bottom, i, line)
    if not kernels:
        bottom.text(0.5, 0.5, "no convolution in the masks", transform=bottom.transAxes, ha="center")
    _finish(bottom, "trunk sparsity (%)", "completely pruned kernels")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, out_png)


def plot_stage_maps(rows: Sequence[tuple[str, Sequence[StageMap]]], out_png: Path, *, title: str) -> Path:
    """One row per run, one panel per stage (B1, B2, …): bright = kernel entirely pruned, dark = some
    weight kept, light blue = no kernel."""
    n_cols = max(len(maps) for _, maps in rows)
    cmap = colormaps["gray"].with_extremes(bad=NO_KERNEL)
    fig = Figure(figsize=(3.2 * n_cols + 0.6, 2.6 * len(rows) + 0.6))
    axes = fig.subplots(len(rows), n_cols, squeeze=False)
    for r, (label, maps) in enumerate(rows):
        for c in range(n_cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(maps):
                ax.set_axis_off()
                continue
            sm = maps[c]
            ax.imshow(np.ma.masked_invalid(sm.image), cmap=cmap, vmin=0.0, vmax=1.0, aspect="auto",
                      interpolation="nearest")
            ax.set_title(f"B{c + 1} ({sm.stage}): {sm.zero_kernels}/{sm.kernels} zero", fontsize=8)
            if c == 0:
                ax.set_ylabel(label, fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, out_png)


def plot_controls(panels: Sequence[tuple[str, Sequence[Line], Optional[float]]], metric: str, out_png: Path, *,
                  title: str) -> Path:
    """One panel per series: the ticket (solid), each control (dashed) and the dense mean (grey dashed),
    metric against sparsity."""
    fig = Figure(figsize=(5.2 * len(panels), 4.2))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (label, lines, dense) in zip(axes, panels):
        if dense is not None:
            ax.axhline(dense, color="grey", linestyle="--", linewidth=0.9, label="dense")
        for i, line in enumerate(lines):
            _band(ax, i, line, linestyle="-" if i == 0 else "--")
        ax.set_title(label, fontsize=9)
        _finish(ax, "scope sparsity (%)", f"{metric} (mean ± 1 std over seeds)")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, out_png)
