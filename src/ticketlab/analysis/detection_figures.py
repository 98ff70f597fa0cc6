"""The figures of the report's COCO breakdown and error sections (paper 001 Fig. 4, 5, 7–9).

One panel per COCO iou type (bbox, segm, keypoints) side by side, so a reader sees at once whether
a ticket loses on boxes, masks or poses. Built like `figures`: a bare `Figure` on the Agg canvas,
written atomically; undefined values (None) are left out of lines and drawn as missing bars.
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

import numpy as np
from matplotlib.figure import Figure

from ticketlab.analysis.figures import _save

Values = Mapping[str, Sequence[Optional[float]]]  # line or bar label -> one value per x position


def _nan(values: Sequence[Optional[float]]) -> np.ndarray:
    return np.asarray([np.nan if v is None else v for v in values], dtype=float)


def _panels(n: int, width: float = 4.6, height: float = 3.8):
    fig = Figure(figsize=(max(5.0, width * n), height))
    axes = np.atleast_1d(fig.subplots(1, n, squeeze=False)[0])
    return fig, axes


def plot_change_lines(panels: Mapping[str, tuple[Sequence[float], Values, Mapping[str, str]]], out_png, *,
                      title: str) -> object:
    """Per panel: x = scope sparsity (fraction), one line of % change vs dense per label; the third
    item maps a label to its line style ('-' or '--')."""
    fig, axes = _panels(len(panels))
    for ax, (name, (sparsity, lines, styles)) in zip(axes, panels.items()):
        x = 100.0 * np.asarray(sparsity, dtype=float)
        for i, (label, ys) in enumerate(lines.items()):
            ax.plot(x, _nan(ys), marker="o", linestyle=styles.get(label, "-"), color=f"C{i % 10}", label=label)
        ax.axhline(0.0, color="black", linewidth=0.8)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("scope sparsity (%)")
        ax.set_ylabel("AP change vs dense (%)")
        ax.grid(alpha=0.3)
        if lines:
            ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, out_png)


def plot_grouped_bars(panels: Mapping[str, tuple[Sequence[str], Values]], out_png, *, title: str,
                      ylabel: str) -> object:
    """Per panel: groups along x (categories or error types), one bar per label (a level) in each."""
    widest = max((len(groups) for groups, _ in panels.values()), default=1)
    fig, axes = _panels(len(panels), width=max(4.6, 0.45 * widest + 1.5), height=4.4)
    for ax, (name, (groups, bars)) in zip(axes, panels.items()):
        x = np.arange(len(groups))
        width = 0.8 / max(1, len(bars))
        for i, (label, ys) in enumerate(bars.items()):
            ax.bar(x - 0.4 + width * (i + 0.5), _nan(ys), width=width, label=label, color=f"C{i % 10}")
        ax.axhline(0.0, color="black", linewidth=0.8)
        ax.set_xticks(x)
        ax.set_xticklabels(groups, rotation=60, ha="right", fontsize=8)
        ax.set_title(name, fontsize=10)
        ax.set_ylabel(ylabel)
        ax.grid(axis="y", alpha=0.3)
        if bars:
            ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, out_png)


def plot_stacked_shares(levels: Sequence[str], shares: Values, notes: Sequence[str], out_png, *,
                        title: str) -> object:
    """One bar per level stacked from the categories' shares (fractions), with a note under each."""
    fig = Figure(figsize=(max(5.0, 1.1 * len(levels) + 3.0), 4.4))
    ax = fig.subplots()
    x = np.arange(len(levels))
    bottom = np.zeros(len(levels))
    for i, (label, ys) in enumerate(shares.items()):
        y = 100.0 * np.nan_to_num(_nan(ys))
        ax.bar(x, y, bottom=bottom, label=label, color=f"C{i % 10}", width=0.6)
        bottom += y
    ax.set_xticks(x)
    ax.set_xticklabels([f"{lv}\n{n}" for lv, n in zip(levels, notes)], fontsize=7)
    ax.set_ylabel("keypoints of matched detections (%)")
    ax.set_ylim(0, 105)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, out_png)


def plot_pr_panels(panels: Mapping[str, Sequence[tuple[str, Sequence[float], Sequence[float], float]]], out_png, *,
                   title: str, xlabel: str = "recall", ylabel: str = "precision") -> object:
    """One panel per model (dense, tickets), each with a precision–recall curve per row
    (label, recall, precision, AP), the AP in the legend — Ronchi & Perona's figure layout."""
    fig, axes = _panels(len(panels), width=4.2, height=4.0)
    for ax, (name, curves) in zip(axes, panels.items()):
        for i, (label, recall, precision, ap) in enumerate(curves):
            ax.plot(recall, precision, color=f"C{i % 10}", lw=1.2, label=f"[{ap:.3f}] {label}")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(name, fontsize=9)
        ax.legend(fontsize=6, loc="lower left")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, out_png)
