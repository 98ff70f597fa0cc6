"""The report's mask sections at one level: kept % per layer, mask similarity, zero kernels.

Paper 001 (Fig. 2c) compares how much of each layer global and layer-wise pruning keep; paper 002
(§5, Fig. 6–7) compares masks found in different ways by their overlap and by the convolution
kernels they prune away entirely. Each section writes its CSV and PNG into the report directory
and returns the page block that shows them, with a caption naming the runs, seeds and level.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import torch

from ticketlab.analysis import figures, tables
from ticketlab.analysis.masks import is_conv, kernel_map, kept_per_layer, similarity_matrix, zero_kernels
from ticketlab.analysis.page import Block
from ticketlab.analysis.runs import Run, Series, Stat, mean_std

Mask = Mapping[str, torch.Tensor]


@dataclass(frozen=True)
class AtLevel:
    """What every mask section needs: where to write, which runs and masks, and the level."""
    out: Path
    runs: Sequence[Run]
    masks: Sequence[Mask]
    level: int
    reason: str                # why this level (shown in every caption)

    @property
    def tag(self) -> str:
        return f"level_{self.level:02d}"

    @property
    def where(self) -> str:
        sparsity = ", ".join(f"{r.label} {_pct(tables.level_sparsity(r, self.level))}" for r in self.runs)
        return f"level {self.level} ({self.reason}); scope sparsity {sparsity}"


def _pct(x: float | None) -> str:
    return "?" if x is None else f"{100.0 * x:.1f}%"


def runs_text(runs: Sequence[Run]) -> str:
    return ", ".join(f"{r.label} (seed {r.seed})" for r in runs)


def short_label(s: Series, limit: int = 40) -> str:
    """A series' label for a legend: its own when short, else its task and run labels (the config
    keys that tell series apart are in summary_by_series.csv)."""
    return s.label if len(s.label) <= limit else f"{s.runs[0].task}: {', '.join(r.label for r in s.runs)}"


def short_series_text(series: Sequence[Series]) -> str:
    """Like `series_text`, with each series under its `short_label`."""
    return "; ".join(f"{short_label(s)} — {runs_text(s.runs)}" for s in series)


def series_text(series: Sequence[Series]) -> str:
    return "; ".join(f"{s.label}: {runs_text(s.runs)}" for s in series)


@dataclass(frozen=True)
class KeptSeries:
    """One series' share of each layer kept, over the seeds whose masks hold the layer."""
    series: Series
    numel: dict[str, int]          # layer → its size (equal in every run of the series)
    seeds: dict[str, list[int]]    # layer → the seeds of the runs whose masks hold it
    kept: dict[str, Stat]          # layer → mean, sample std (None for one run) and n of the kept fraction


def kept_by_series(series: Sequence[Series], mask_of: Mapping[Path, Mask]) -> list[KeptSeries]:
    """Per series and layer, the kept fraction's mean ± sample std over the series' runs (paper 001
    Fig. 2c draws one bar per pruning method; the seeds of a method are one series)."""
    out = []
    for s in series:
        values: dict[str, list[float]] = {}
        numel: dict[str, int] = {}
        seeds: dict[str, list[int]] = {}
        for run in s.runs:
            mask = mask_of[run.path]
            for name, frac in kept_per_layer(mask):
                values.setdefault(name, []).append(frac)
                numel.setdefault(name, mask[name].numel())
                seeds.setdefault(name, []).append(run.seed)
        out.append(KeptSeries(series=s, numel=numel, seeds=seeds,
                              kept={n: mean_std(v) for n, v in values.items()}))
    return out


def kept_series_table(kept: Sequence[KeptSeries]) -> tables.Table:
    header = ["series", "layer", "numel", "n", "seeds", "kept_fraction_mean", "kept_fraction_std"]
    rows = []
    for k in kept:
        for name, st in k.kept.items():
            seeds = " ".join(map(str, k.seeds[name]))
            rows.append([k.series.label, name, k.numel[name], st.n, seeds, st.mean, st.std])
    return header, rows


def kept_section(at: AtLevel, series: Sequence[Series], written: list[Path]) -> Block:
    name, data, per_run = (f"kept_per_layer_{at.tag}.png", f"kept_per_layer_by_series_{at.tag}.csv",
                           f"kept_per_layer_{at.tag}.csv")
    series_of = {r.label: s.label for s in series for r in s.runs}
    written.append(tables.write_csv(at.out / per_run, tables.kept_table(at.runs, at.masks, series_of)))
    kept = kept_by_series(series, {r.path: m for r, m in zip(at.runs, at.masks)})
    written.append(tables.write_csv(at.out / data, kept_series_table(kept)))
    bars = [figures.Bars(label=f"{short_label(k.series)} (n={len(k.series.runs)})",
                         mean={n: st.mean for n, st in k.kept.items()},
                         std={n: st.std or 0.0 for n, st in k.kept.items()}) for k in kept]
    written.append(figures.plot_kept_per_layer(bars, at.out / name,
                                               title=f"weights kept per layer, level {at.level}"))
    return Block(heading="Weights kept per layer", image=name, data=[data, per_run],
                 caption=f"Percentage of each pruned tensor's weights kept (paper 001 Fig. 2c), at {at.where}: "
                         f"one bar per series (runs that differ only by seed), the mean over its seeds with "
                         f"±1 sample std error bars (none for a single run; n in the legend, per layer in "
                         f"{data}; each run's counts in {per_run}). "
                         f"Series: {short_series_text(series)}.")


def similarity_sections(at: AtLevel, written: list[Path]) -> list[Block]:
    """One matrix per group of runs whose masks have the same layout (names and shapes)."""
    layouts: dict[tuple, list[int]] = {}
    for i, m in enumerate(at.masks):
        layouts.setdefault(tuple((n, tuple(t.shape)) for n, t in m.items()), []).append(i)
    groups = [idx for layout, idx in layouts.items() if layout and len(idx) >= 2]  # an empty mask has no pattern
    if not groups:
        why = "Only one run" if len(at.runs) == 1 else "No two runs have masks of the same layout (names and shapes)"
        return [Block(heading="Mask similarity", note=f"{why}: no pair of masks to compare.")]
    blocks = []
    for g, idx in enumerate(groups):
        group = [at.runs[i] for i in idx]
        labels, matrix = similarity_matrix({at.runs[i].label: at.masks[i] for i in idx})
        suffix = "" if g == 0 else f"_{g + 1}"
        name, data = f"mask_similarity_{at.tag}{suffix}.png", f"mask_similarity_{at.tag}{suffix}.csv"
        written.append(tables.write_csv(at.out / data, tables.similarity_table(labels, matrix)))
        written.append(figures.plot_similarity(labels, matrix, at.out / name,
                                               title=f"relative mask similarity, level {at.level}"))
        others = [r for r in at.runs if r not in group]
        note = f" Runs with masks of another layout are not in this matrix: {runs_text(others)}." if others else ""
        blocks.append(Block(heading="Mask similarity", image=name, data=[data],
                            caption=f"Relative similarity |a ∩ b| / |a ∪ b| of the kept weights of each pair of "
                                    f"masks (paper 002 §5) — ResNet masks on their trunk, named relative to "
                                    f"it, so models of different kinds meet — at {at.where}. Runs: {runs_text(group)}.{note}"))
    return blocks


def kernel_map_layer(layers: Sequence[str], spatial: Sequence[str],
                     counts: Sequence[Mapping[str, tuple[int, int]]]) -> str:
    """The layer worth a kernel map: the largest mean share of zero kernels over the runs holding it,
    among the layers with kernels larger than 1×1 that have any (a 1×1 kernel is a single weight),
    else among all layers; with no zero kernel anywhere, the spatial layer with the most kernels."""
    def share(name: str) -> float:
        held = [c[name] for c in counts if name in c and c[name][1]]
        return sum(z / t for z, t in held) / len(held) if held else 0.0

    def kernels(name: str) -> int:
        return max((c[name][1] for c in counts if name in c), default=0)

    pool = [n for n in spatial if share(n) > 0] or [n for n in layers if share(n) > 0] or list(spatial or layers)
    return max(pool, key=lambda n: (share(n), kernels(n), -layers.index(n)))


def kernel_sections(at: AtLevel, written: list[Path]) -> list[Block]:
    """All-zero kernels per layer (bars) and the kernel map of the layer with the most of them."""
    conv = [(r, m) for r, m in zip(at.runs, at.masks) if any(is_conv(t) for t in m.values())]
    if not conv:
        return [Block(heading="Zero kernels", note="No convolution weights in the runs' scopes: no kernels to count.")]
    runs, masks = [r for r, _ in conv], [m for _, m in conv]
    others = [r for r in at.runs if r not in runs]
    left_out = f" Runs without convolutions left out: {runs_text(others)}." if others else ""
    name, data = f"zero_kernels_{at.tag}.png", f"zero_kernels_{at.tag}.csv"
    written.append(tables.write_csv(at.out / data, tables.zero_kernel_table(runs, masks)))
    counts = [zero_kernels(m) for m in masks]
    written.append(figures.plot_zero_kernels(list(zip([r.label for r in runs], counts)), at.out / name,
                                             title=f"all-zero kernels per layer, level {at.level}"))
    blocks = [Block(heading="Zero kernels", image=name, data=[data],
                    caption=f"Kernels (weight[o, i, …] of a convolution) with every weight pruned, per layer "
                            f"(paper 002 Fig. 6), at {at.where}. Runs: {runs_text(runs)}.{left_out}")]

    first = masks[0]
    layers = list(counts[0])
    spatial = [n for n in layers if math.prod(first[n].shape[2:]) > 1]
    layer = kernel_map_layer(layers, spatial, counts)
    holders = [(r, m) for r, m in conv if layer in m and tuple(m[layer].shape) == tuple(first[layer].shape)]
    name, data = f"kernel_map_{at.tag}.png", f"kernel_map_{at.tag}.csv"
    written.append(tables.write_csv(at.out / data, tables.kernel_map_table([r for r, _ in holders],
                                                                        [m for _, m in holders], layer)))
    written.append(figures.plot_kernel_maps([(r.label, kernel_map(m, layer)) for r, m in holders], at.out / name,
                                            layer=layer, title=f"zero kernels, level {at.level}"))
    blocks.append(Block(heading=f"Kernel map of {layer}", image=name, data=[data],
                        caption=f"Kernels of {layer} (output channel × input channel), bright = entirely pruned "
                                f"(paper 002 Fig. 7): the layer with the largest mean share of zero kernels "
                                f"(kernels larger than 1×1 first), at {at.where}. "
                                f"Runs: {runs_text([r for r, _ in holders])}. The CSV lists each zero kernel."))
    return blocks
