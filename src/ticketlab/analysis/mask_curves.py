"""Paper 002's mask comparisons over every level (Fig. 6) and per ResNet stage (Fig. 7).

Fig. 6 draws, against sparsity, the relative similarity |m_i ∩ m_j| / |m_i ∪ m_j| of masks found on
different pre-training tasks (top) and the number of completely pruned kernels of each (bottom);
Fig. 7 shows every kernel of the four residual stages B1–B4 at one level, bright where it is
entirely pruned. Masks are compared on the ResNet trunk under trunk-relative names (`trunk.py`), so a
classifier, SimCLR, MoCo, a detector and a segmenter meet; sparsity here is *trunk sparsity*, the
share of the compared trunk weights pruned, computed from the masks themselves. Levels are read one
at a time, so a run of ResNet-50 masks over 18 levels never sits in memory at once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import torch

from ticketlab.analysis.masks import is_conv, kernel_map, relative_similarity
from ticketlab.analysis.mask_sections import short_label
from ticketlab.analysis.runs import Run, Series, common_levels
from ticketlab.analysis.trunk import comparable, relative, trunk_prefix

Mask = Mapping[str, torch.Tensor]
STAGE = re.compile(r"^(layer\d+)\.")


def sparsity_of(mask: Mask, names: Sequence[str] | None = None) -> float:
    """Share of the weights of `names` (default: every tensor) that the mask prunes."""
    names = list(mask) if names is None else names
    total = sum(mask[n].numel() for n in names)
    kept = sum(int(torch.count_nonzero(mask[n])) for n in names)
    return 1.0 - kept / total if total else 0.0


def zero_kernel_total(mask: Mask) -> tuple[int, int]:
    """(entirely pruned kernels, kernels) summed over every convolution weight of the mask."""
    zero = total = 0
    for name, m in mask.items():
        if is_conv(m):
            k = kernel_map(mask, name)
            zero, total = zero + int(k.sum()), total + int(k.size)
    return zero, total


@dataclass(frozen=True)
class PairPoint:
    """The similarity of two runs' trunk masks at one level."""
    series_a: str
    series_b: str
    run_a: str
    run_b: str
    level: int
    sparsity_a: float
    sparsity_b: float
    similarity: float
    tensors: int                    # tensors compared (shared names, equal shapes)
    left_out: tuple[str, ...]       # shared names of another shape


@dataclass(frozen=True)
class KernelPoint:
    series: str
    run: str
    seed: int
    level: int
    sparsity: float
    zero_kernels: int
    kernels: int


@dataclass(frozen=True)
class MaskCurves:
    levels: list[int]
    pairs: list[PairPoint]
    kernels: list[KernelPoint]
    unmatched: list[tuple[str, str]]     # run pairs without a single comparable tensor


def mask_curves(series: Sequence[Series]) -> MaskCurves:
    """Every level all runs finished: pairwise similarity of runs from different series, and each
    run's zero kernels, on trunk-relative masks."""
    runs: list[tuple[Series, Run]] = [(s, r) for s in series for r in s.runs]
    levels = common_levels([r for _, r in runs])
    prefixes = {r.path: trunk_prefix(r) for _, r in runs}
    pairs: list[PairPoint] = []
    kernels: list[KernelPoint] = []
    unmatched: set[tuple[str, str]] = set()
    for level in levels:
        masks = [relative(r.mask(level), prefixes[r.path]) for _, r in runs]
        for (s, r), m in zip(runs, masks):
            zero, total = zero_kernel_total(m)
            kernels.append(KernelPoint(short_label(s), r.label, r.seed, level, sparsity_of(m), zero, total))
        for i, (sa, ra) in enumerate(runs):
            for j in range(i + 1, len(runs)):
                sb, rb = runs[j]
                if sa is sb:
                    continue
                names, left_out = comparable(masks[i], masks[j])
                if not names:
                    unmatched.add((ra.label, rb.label))
                    continue
                a = {n: masks[i][n] for n in names}
                b = {n: masks[j][n] for n in names}
                pairs.append(PairPoint(short_label(sa), short_label(sb), ra.label, rb.label, level, sparsity_of(a),
                                       sparsity_of(b), relative_similarity(a, b), len(names), tuple(left_out)))
    return MaskCurves(levels, pairs, kernels, sorted(unmatched))


def stages(mask: Mask) -> list[str]:
    """The residual stages (`layer1`, `layer2`, …) with a convolution in the mask, in order."""
    found = {STAGE.match(n).group(1) for n, m in mask.items() if STAGE.match(n) and is_conv(m)}
    return sorted(found, key=lambda s: int(s[len("layer"):]))


@dataclass(frozen=True)
class StageMap:
    """All kernels of one stage: each convolution's out × in kernel map, side by side from the input
    to the output layer (one empty column between layers). 1 = entirely pruned, 0 = some weight kept,
    NaN = no kernel (padding below a layer with fewer output channels, and the gaps)."""
    stage: str
    image: np.ndarray
    layers: list[tuple[str, int, int]]     # (name, first column, end column)
    zero_kernels: int
    kernels: int


def stage_map(mask: Mask, stage: str) -> StageMap:
    names = [n for n, m in mask.items() if n.startswith(stage + ".") and is_conv(m)]
    maps = [kernel_map(mask, n) for n in names]
    height = max((k.shape[0] for k in maps), default=0)
    width = sum(k.shape[1] for k in maps) + max(0, len(maps) - 1)
    image = np.full((height, width), np.nan)
    layers, col = [], 0
    for name, k in zip(names, maps):
        image[:k.shape[0], col:col + k.shape[1]] = k
        layers.append((name, col, col + k.shape[1]))
        col += k.shape[1] + 1
    return StageMap(stage, image, layers, int(sum(k.sum() for k in maps)), int(sum(k.size for k in maps)))
