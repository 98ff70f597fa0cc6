"""The report's Fig. 6 and Fig. 7 of paper 002: masks of different runs compared on the ResNet trunk.

Fig. 6: for every level all runs finished, the relative similarity of each pair of series (mean ±
std over their cross-run pairs) and each series' completely pruned kernels (mean ± std over seeds),
against trunk sparsity. Fig. 7: at the report's mask level, every kernel of stages B1–B4 of one run
per series. Runs of any model kind meet here: names are trunk-relative (`trunk.py`).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Sequence

from ticketlab.analysis import tables
from ticketlab.analysis.mask_curves import mask_curves, stage_map, stages
from ticketlab.analysis.mask_figures import Line, plot_fig6, plot_stage_maps
from ticketlab.analysis.mask_sections import AtLevel, short_label, short_series_text
from ticketlab.analysis.page import Block
from ticketlab.analysis.runs import Series, mean_std
from ticketlab.analysis.trunk import trunk_mask


def _line(label: str, points: dict[int, list[tuple[float, float]]]) -> Line:
    """Per level: mean x and mean ± std y over the (x, y) points of that level."""
    levels = sorted(points)
    xs = [mean_std([x for x, _ in points[lv]]).mean for lv in levels]
    ys = [mean_std([y for _, y in points[lv]]) for lv in levels]
    return Line(label, xs, [s.mean for s in ys], [s.std or 0.0 for s in ys])


def fig6_sections(out: Path, series: Sequence[Series], written: list[Path]) -> list[Block]:
    curves = mask_curves(series)
    if len(curves.levels) < 2:
        return [Block(heading="Mask similarity and zero kernels over sparsity",
                      note="The runs have fewer than two finished levels in common: no curve to draw.")]
    pair_pts: dict[tuple[str, str], dict[int, list]] = defaultdict(lambda: defaultdict(list))
    for p in curves.pairs:
        pair_pts[(p.series_a, p.series_b)][p.level].append(((p.sparsity_a + p.sparsity_b) / 2, p.similarity))
    kernel_pts: dict[str, dict[int, list]] = defaultdict(lambda: defaultdict(list))
    for k in (k for k in curves.kernels if k.kernels):      # runs without convolutions have no kernels
        kernel_pts[k.series][k.level].append((k.sparsity, float(k.zero_kernels)))
    similarity = [_line(f"{a} vs {b}", pts) for (a, b), pts in pair_pts.items()]
    kernels = [_line(s, pts) for s, pts in kernel_pts.items()]

    sim_csv, ker_csv, png = "fig6_similarity.csv", "fig6_zero_kernels.csv", "fig6_masks_vs_sparsity.png"
    written.append(tables.write_csv(out / sim_csv, (
        ["series_a", "series_b", "run_a", "run_b", "level", "trunk_sparsity_a", "trunk_sparsity_b", "similarity",
         "tensors_compared", "left_out"],
        [[p.series_a, p.series_b, p.run_a, p.run_b, p.level, p.sparsity_a, p.sparsity_b, p.similarity, p.tensors,
          " ".join(p.left_out)] for p in curves.pairs])))
    written.append(tables.write_csv(out / ker_csv, (
        ["series", "run", "seed", "level", "trunk_sparsity", "zero_kernels", "kernels"],
        [[k.series, k.run, k.seed, k.level, k.sparsity, k.zero_kernels, k.kernels] for k in curves.kernels])))
    written.append(plot_fig6(similarity, kernels, out / png, title="masks over IMP levels (paper 002 Fig. 6)"))
    left_out = sorted({n for p in curves.pairs for n in p.left_out})
    notes = []
    if not similarity:
        notes.append("Only one series: no pair of series to compare (top panel empty).")
    if not kernels:
        notes.append("No convolution in any mask: no kernels to count (bottom panel empty).")
    if left_out:
        notes.append(f"Tensors of different shapes in the two models are not compared: {', '.join(left_out)}.")
    if curves.unmatched:
        notes.append("Run pairs without a tensor in common, not compared: "
                     + "; ".join(f"{a} / {b}" for a, b in curves.unmatched) + ".")
    caption = (f"Top: relative similarity |m_i ∩ m_j| / |m_i ∪ m_j| of the masks of two series at the same "
               f"level (mean ± std over their cross-run pairs); bottom: kernels weight[o, i, …] with every "
               f"weight pruned, summed over the trunk's convolutions (mean ± std over seeds). Masks are compared "
               f"on the ResNet trunk under names relative to it (layer1.0.conv1.weight whatever the model's "
               f"prefix; heads, FPN and the first conv where it is not in the scope are not part of it); x is the "
               f"share of those trunk weights pruned. Levels {', '.join(map(str, curves.levels))}. Series: "
               f"{short_series_text(series)}. " + " ".join(notes))
    return [Block(heading="Mask similarity and zero kernels over sparsity (Fig. 6)", image=png,
                  data=[sim_csv, ker_csv], caption=caption)]


def fig7_sections(at: AtLevel, series: Sequence[Series], written: list[Path]) -> list[Block]:
    rows, table = [], []
    for s in series:
        run = s.runs[0]
        mask = trunk_mask(run, at.level)
        maps = [stage_map(mask, st) for st in stages(mask)]
        if not maps:
            continue
        label = short_label(s)
        rows.append((label if run.label in label else f"{label}\n{run.label}", maps))
        for sm in maps:
            for name, first, end in sm.layers:
                k = sm.image[:, first:end]
                table.append([label, run.label, sm.stage, name, int((k == 1).sum()), int((k >= 0).sum())])
    if not rows:
        return [Block(heading="Kernel heatmaps of B1–B4", note="No run has residual stages (layer1, layer2, …) "
                                                               "with convolutions in its scope.")]
    png, csv = f"fig7_stage_kernels_{at.tag}.png", f"fig7_stage_kernels_{at.tag}.csv"
    written.append(tables.write_csv(at.out / csv, (
        ["series", "run", "stage", "layer", "zero_kernels", "kernels"], table)))
    written.append(plot_stage_maps(rows, at.out / png, title=f"all kernels per stage, level {at.level}"))
    caption = (f"Every kernel of each residual stage (B1 = layer1 … ), one run per series, at {at.where}: each "
               f"convolution's output channel × input channel map, from the stage's first to its last layer left "
               f"to right; bright = kernel entirely pruned, dark = some weight kept, light blue = no kernel "
               f"(paper 002 Fig. 7 shows "
               f"79.03% sparsity). Rows: " + "; ".join(label.replace("\n", ": ") for label, _ in rows) + ". "
               f"The CSV counts the zero kernels of each layer.")
    return [Block(heading="Kernel heatmaps of B1–B4 (Fig. 7)", image=png, data=[csv], caption=caption)]
