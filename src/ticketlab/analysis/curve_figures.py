"""Line figures of how a run develops, not of one level: early-bird mask overlap over training
(001 Fig. 2f), loss and metric against epoch for the dense run and a ticket (001 Fig. 10), and a
swept setting against the metric with a ±1 std band over seeds (late resetting, 001 Fig. 2b; rounds
of pruning, 001 Fig. 2d). Same conventions as `figures.py`: `Figure` + Agg, atomic PNG writes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from matplotlib.figure import Figure

from ticketlab.analysis.figures import _save, save_band_axes


@dataclass(frozen=True)
class EarlyBirdLine:
    """One series' early-bird draws over its seeds: % of dense training; per draw the mean and std
    (0 for one seed) of the IoU with the last draw of the kept and of the pruned weights, and of the
    retrained metric where branches exist (NaN elsewhere); the level-1 ticket's (mean, std); the % of
    training at which each seed's detector fired."""
    label: str
    percent: Sequence[float]
    iou_kept: Sequence[float]
    iou_kept_std: Sequence[float]
    iou_pruned: Sequence[float]
    iou_pruned_std: Sequence[float]
    retrained: Sequence[float]
    retrained_std: Sequence[float]
    ticket: Optional[tuple[float, float]]  # the level-1 ticket's metric (mask of the fully trained run)
    fired_percent: Sequence[float]
    stopped: bool


def plot_early_bird(lines: Sequence[EarlyBirdLine], metric: str, out_png: Path, *, title: str) -> Path:
    """IoU with the final mask against % of dense training, mean with a ±1 std band over seeds (001
    Fig. 2f draws the mean over 5 runs with an error band); on the right axis the retrained early-bird
    tickets (mean ± 1 std error bars) and the level-1 ticket (dashed, its ±1 std band)."""
    fig = Figure(figsize=(7.2, 4.4))
    ax = fig.subplots()
    right = ax.twinx()
    for i, ln in enumerate(lines):
        color = f"C{i % 10}"
        x = np.asarray(ln.percent, dtype=float)
        for mean, std, marker, style, what in ((ln.iou_kept, ln.iou_kept_std, "o", "-", "kept"),
                                               (ln.iou_pruned, ln.iou_pruned_std, "s", ":", "pruned")):
            y, s = np.asarray(mean, dtype=float), np.asarray(std, dtype=float)
            ax.plot(x, y, marker=marker, linestyle=style, color=color, label=f"{ln.label}: IoU {what}")
            ax.fill_between(x, y - s, y + s, color=color, alpha=0.15, linewidth=0)
        again = np.asarray(ln.retrained, dtype=float)
        if np.isfinite(again).any():
            right.errorbar(x, again, yerr=np.asarray(ln.retrained_std, dtype=float), marker="^", linestyle="none",
                           color=color, markersize=8, capsize=3, label=f"{ln.label}: retrained {metric}")
        if ln.ticket is not None:
            mean, std = ln.ticket
            right.axhline(mean, color=color, linestyle="--", linewidth=0.9)
            right.axhspan(mean - std, mean + std, color=color, alpha=0.08, linewidth=0)
        for fired in ln.fired_percent:
            ax.axvline(fired, color=color, linestyle="-." if ln.stopped else ":", linewidth=1.0)
    ax.set_xlabel("dense training done when the mask was drawn (%)")
    ax.set_ylabel("IoU with the final mask (mean ± 1 std over seeds)")
    right.set_ylabel(f"{metric} of the retrained early-bird ticket")
    ax.set_xlim(0, 105)
    ax.grid(alpha=0.3)
    handles = ax.get_legend_handles_labels()
    more = right.get_legend_handles_labels()
    ax.legend(handles[0] + more[0], handles[1] + more[1], fontsize=7, loc="lower right")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, out_png)


@dataclass(frozen=True)
class HistoryLine:
    label: str
    dashed: bool                      # the ticket (dashed) vs the dense run (solid)
    epoch: Sequence[float]
    loss: Sequence[float]
    metric: Sequence[float] = field(default_factory=list)


def plot_convergence(lines: Sequence[HistoryLine], loss_name: str, metric: str, out_png: Path, *,
                     title: str, colors: Sequence[int]) -> Path:
    """Two panels against epoch: the loss and the headline metric; one color per run."""
    fig = Figure(figsize=(10.0, 4.0))
    left, right = fig.subplots(1, 2)
    for ln, c in zip(lines, colors):
        style = dict(color=f"C{c % 10}", linestyle="--" if ln.dashed else "-", marker=".", label=ln.label)
        left.plot(ln.epoch, ln.loss, **style)
        if ln.metric:
            right.plot(ln.epoch, ln.metric, **style)
    for ax, name in ((left, loss_name), (right, metric)):
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, out_png)


MeanStd = Optional[tuple[float, float]]   # mean and std over seeds (0 for one seed); None: no value


@dataclass(frozen=True)
class SweepCurve:
    """One line of a sweep figure: the metric at each value of the swept setting and the dense level
    it is judged against there (the line's own dense model; the same value all along when the swept
    setting is a `prune.*` one)."""
    label: str
    metric: Sequence[MeanStd]
    dense: Sequence[MeanStd]


def _arrays(points: Sequence[MeanStd]) -> tuple[np.ndarray, np.ndarray]:
    return (np.array([np.nan if p is None else p[0] for p in points], dtype=float),
            np.array([np.nan if p is None else p[1] for p in points], dtype=float))


def _dense_line(ax, x: np.ndarray, dense: Sequence[MeanStd], color: str, label: str) -> None:
    d, ds = _arrays(dense)
    if not np.isnan(d).all():
        ax.plot(x, d, color=color, linestyle="--", linewidth=0.9, label=label)
        ax.fill_between(x, d - ds, d + ds, color=color, alpha=0.1, linewidth=0)


def plot_sweep(x_labels: Sequence[str], curves: Sequence[SweepCurve], out_png: Path, *, x_name: str,
               metric: str, title: str) -> Path:
    """Metric (mean, band ±1 std) at each value of a swept setting, one line per other-setting combination;
    each line's dense mean ± std dashed with a light band in its color — one grey dashed line and band,
    labelled "dense", when every line has the same dense reference (across the axis where it is constant)."""
    fig = Figure(figsize=(6.4, 4.2))
    ax = fig.subplots()
    x = np.arange(len(x_labels))
    shared = len({tuple(c.dense) for c in curves}) == 1
    if shared and len(set(curves[0].dense)) == 1 and curves[0].dense[0] is not None:
        mean, std = curves[0].dense[0]
        ax.axhline(mean, color="grey", linestyle="--", linewidth=0.9, label="dense")
        ax.axhspan(mean - std, mean + std, color="grey", alpha=0.15, linewidth=0)
    elif shared:
        _dense_line(ax, x, curves[0].dense, "grey", "dense")
    for i, c in enumerate(curves):
        color = f"C{i % 10}"
        y, s = _arrays(c.metric)
        ax.plot(x, y, marker="o", color=color, label=c.label)
        ax.fill_between(x, y - s, y + s, color=color, alpha=0.2, linewidth=0)
        if not shared:
            _dense_line(ax, x, c.dense, color, f"dense ({c.label})")
    ax.set_xticks(x)
    ax.set_xticklabels(x_labels, fontsize=8)
    return save_band_axes(fig, ax, x_name, metric, title, out_png)


def plot_early_stop(curves: Sequence[tuple[str, Sequence[float], Sequence[float], Sequence[float]]],
                    out_png: Path, *, title: str) -> Path:
    """Early-stopping step (mean, band ±1 std) against % of the weights left, one line per
    (series, kind); the x axis runs from dense (left) to sparse, on a log scale (Frankle & Carbin Fig. 4)."""
    fig = Figure(figsize=(6.8, 4.2))
    ax = fig.subplots()
    for i, (label, left, mean, std) in enumerate(curves):
        x, y, s = (np.asarray(v, dtype=float) for v in (left, mean, std))
        ax.plot(x, y, marker="o", color=f"C{i % 10}", linestyle="-" if i % 3 == 0 else "--", label=label)
        ax.fill_between(x, y - s, y + s, color=f"C{i % 10}", alpha=0.15, linewidth=0)
    ax.set_xscale("log")
    ax.invert_xaxis()
    return save_band_axes(fig, ax, "% of the scope's weights left", "early-stopping step", title, out_png)


def plot_metric_vs_latency(curves: Sequence[tuple[str, Sequence[float], Sequence[float], Sequence[float],
                                                  Sequence[float]]],
                           out_png: Path, *, metric: str, xlabel: str, title: str) -> Path:
    """Metric (mean, ±1 std error bars) against measured latency (mean, ±1 std error bars) per level,
    one line per series: (label, latency mean, latency std, metric mean, metric std). Levels of one series
    are joined in level order, so a line shows where each level's pruning moved both."""
    fig = Figure(figsize=(6.4, 4.2))
    ax = fig.subplots()
    for i, (label, x, xs, y, ys) in enumerate(curves):
        ax.errorbar(np.asarray(x, dtype=float), np.asarray(y, dtype=float), xerr=np.asarray(xs, dtype=float),
                    yerr=np.asarray(ys, dtype=float), marker="o", color=f"C{i % 10}", label=label, capsize=3)
    return save_band_axes(fig, ax, xlabel, metric, title, out_png)
