"""The report's figures, one function each, written as PNG files.

The curves and maps the two papers draw: metric vs scope sparsity with a band of ±1 std over seeds
and the dense mean as a dashed line (001 Fig. 1–3), the share of each layer kept by global vs
layer-wise pruning (001 Fig. 2c), the relative-similarity matrix of masks and the all-zero kernels
per layer and within one convolution (002 Fig. 6–7). Figures are built on `matplotlib.figure.Figure`
with the Agg canvas, not through pyplot, so no global figure state is created or leaked; files are
written atomically.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ticketlab.atomic import atomic_write_bytes

DPI = 110


@dataclass(frozen=True)
class Curve:
    """One series for `plot_metric_bands`: per level, mean scope sparsity (fraction) and metric."""
    label: str
    sparsity: Sequence[float]
    mean: Sequence[float]
    std: Sequence[float]            # 0 where unknown (a single seed)
    dense: Optional[float] = None   # dense mean, drawn dashed


@dataclass(frozen=True)
class Bars:
    """One series for `plot_kept_per_layer`: per layer, the mean and std (0 where unknown) of a fraction."""
    label: str
    mean: Mapping[str, float]
    std: Mapping[str, float]


def _save(fig: Figure, out_png: Path) -> Path:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    out_png = Path(out_png)
    atomic_write_bytes(out_png, buf.getvalue())
    return out_png


def short_name(param: str) -> str:
    """'backbone.body.layer1.0.conv1.weight' → 'backbone.body.layer1.0.conv1'."""
    return param.removesuffix(".weight")


def plot_metric_bands(curves: Sequence[Curve], metric: str, out_png: Path, *, title: str) -> Path:
    fig = Figure(figsize=(6.4, 4.2))
    ax = fig.subplots()
    for i, c in enumerate(curves):
        color = f"C{i % 10}"
        x = 100.0 * np.asarray(c.sparsity, dtype=float)
        y = np.asarray(c.mean, dtype=float)
        s = np.asarray(c.std, dtype=float)
        ax.plot(x, y, marker="o", color=color, label=c.label)
        ax.fill_between(x, y - s, y + s, color=color, alpha=0.2, linewidth=0)
        if c.dense is not None:
            ax.axhline(c.dense, color=color, linestyle="--", linewidth=0.9)
    return save_band_axes(fig, ax, "scope sparsity (% of prunable weights removed)", metric, title, out_png)


def save_band_axes(fig: Figure, ax, xlabel: str, metric: str, title: str, out_png: Path) -> Path:
    """Label a mean ± std plot the one way every such figure is labelled, and save it."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"{metric} (mean ± 1 std over seeds)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, out_png)


def _layer_order(per_run: Sequence[tuple[str, Mapping[str, object]]]) -> list[str]:
    names: list[str] = []
    for _, table in per_run:
        names += [n for n in table if n not in names]
    return names


def _grouped_bars(ax, per_run: Sequence[tuple[str, Mapping[str, float]]], names: Sequence[str],
                  errors: Optional[Sequence[Mapping[str, float]]] = None) -> None:
    """One bar per entry of `per_run` at each name; `errors`, one table per entry, draws ± error bars."""
    width = 0.8 / max(1, len(per_run))
    x = np.arange(len(names))
    for i, (label, table) in enumerate(per_run):
        ys = [table.get(n, np.nan) for n in names]
        err = None if errors is None else [errors[i].get(n, 0.0) for n in names]
        ax.bar(x - 0.4 + width * (i + 0.5), ys, width=width, label=label, color=f"C{i % 10}",
               yerr=err, capsize=2 if err is not None else 0, error_kw={"elinewidth": 0.8})
    ax.set_xticks(x)
    ax.set_xticklabels([short_name(n) for n in names], rotation=90, fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)


def _bar_figure(n_layers: int) -> Figure:
    return Figure(figsize=(max(6.4, 0.35 * n_layers + 2.0), 4.8))


def plot_kept_per_layer(bars: Sequence[Bars], out_png: Path, *, title: str) -> Path:
    """Grouped bars: for each layer, the mean % of its weights each series keeps, ±1 std error bars."""
    names = _layer_order([(b.label, b.mean) for b in bars])
    fig = _bar_figure(len(names))
    ax = fig.subplots()
    _grouped_bars(ax, [(b.label, {n: 100.0 * f for n, f in b.mean.items()}) for b in bars], names,
                  errors=[{n: 100.0 * e for n, e in b.std.items()} for b in bars])
    ax.set_ylabel("weights kept (%, mean ± 1 std over seeds)")
    ax.set_ylim(0, 105)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, out_png)


def plot_zero_kernels(per_run: Sequence[tuple[str, Mapping[str, tuple[int, int]]]], out_png: Path, *,
                      title: str) -> Path:
    """Grouped bars: for each convolution, how many of its kernels each run prunes entirely."""
    tables = [(label, {n: float(z) for n, (z, _) in counts.items()}) for label, counts in per_run]
    names = _layer_order(tables)
    fig = _bar_figure(len(names))
    ax = fig.subplots()
    _grouped_bars(ax, tables, names)
    ax.set_ylabel("all-zero kernels")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, out_png)


def plot_similarity(labels: Sequence[str], matrix: np.ndarray, out_png: Path, *, title: str) -> Path:
    """Heat map of the relative-similarity matrix with each value written in its cell."""
    n = len(labels)
    side = max(4.0, 0.9 * n + 2.5)
    fig = Figure(figsize=(side + 1.0, side))
    ax = fig.subplots()
    im = ax.imshow(matrix, vmin=0.0, vmax=1.0, cmap="viridis")
    for i in range(n):
        for j in range(n):
            v = float(matrix[i, j])
            ax.text(j, i, f"{v:.3f}", ha="center", va="center", fontsize=8,
                    color="black" if v > 0.6 else "white")
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    ax.set_xticklabels(labels, rotation=45, ha="right", fontsize=8)
    ax.set_yticklabels(labels, fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, label="|a ∩ b| / |a ∪ b|")
    fig.tight_layout()
    return _save(fig, out_png)


def plot_kernel_maps(maps: Sequence[tuple[str, np.ndarray]], out_png: Path, *, layer: str, title: str) -> Path:
    """One out × in panel per run; bright = kernel entirely pruned, dark = some weight kept."""
    cols = len(maps)
    fig = Figure(figsize=(max(4.0, 3.2 * cols), 4.0))
    axes = np.atleast_1d(fig.subplots(1, cols, squeeze=False)[0])
    for ax, (label, kmap) in zip(axes, maps):
        ax.imshow(np.asarray(kmap, dtype=float), cmap="gray", vmin=0.0, vmax=1.0, aspect="auto",
                  interpolation="nearest")
        ax.set_title(f"{label}\n{int(np.sum(kmap))}/{kmap.size} zero", fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("input channel", fontsize=8)
        ax.set_ylabel("output channel", fontsize=8)
    fig.suptitle(f"{title}\n{short_name(layer)}", fontsize=10)
    fig.tight_layout()
    return _save(fig, out_png)
