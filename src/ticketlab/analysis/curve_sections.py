"""The report's ticket curves: each metric against scope sparsity, mean over seeds with a ±1 std band
and the dense mean dashed, one line per series (paper 001 Fig. 1, 2a, 2e; paper 002 Fig. 2-5), with
the matching verdict in the caption. The whole report draws them for every run it reads; a study
that names its paper figure draws them again for its own cells under that figure's heading.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from ticketlab.analysis import figures
from ticketlab.analysis.mask_sections import series_text
from ticketlab.analysis.page import Block
from ticketlab.analysis.runs import LevelStats, Series, curve_metrics


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)


def _curve(s: Series, st: Sequence[LevelStats], metric: str) -> figures.Curve:
    levels = [ls for ls in st if metric in ls.values and "sparsity_scope" in ls.values]
    dense = next((ls.values[metric].mean for ls in levels if ls.level == 0), None)
    return figures.Curve(label=s.label, sparsity=[ls.values["sparsity_scope"].mean for ls in levels],
                         mean=[ls.values[metric].mean for ls in levels],
                         std=[ls.values[metric].std or 0.0 for ls in levels], dense=dense)


def _matching_text(s: Series, st: Sequence[LevelStats], metric: str) -> str:
    rule = "≥ dense mean − 1 std" if s.higher_is_better(metric) else "≤ dense mean + 1 std (lower is better)"
    yes = [str(ls.level) for ls in st if ls.matching]
    no = [str(ls.level) for ls in st if ls.matching is False]
    return (f"{s.label}: matching ({rule}) at level(s) {', '.join(yes) or 'none'}"
            + (f", not at {', '.join(no)}" if no else ""))


def curve_blocks(out: Path, series: Sequence[Series], stats: Sequence[Sequence[LevelStats]],
                 summary_csv: str, written: list[Path], metric: Optional[str], *, tag: str = "",
                 heading: str = "") -> list[Block]:
    """One figure per metric drawn: each series' verdict metric and the others its task reports.
    `tag` prefixes the PNG names, `heading` the block headings (a study's "Paper … — ")."""
    blocks = []
    drawn = {s.label: curve_metrics(s, metric) for s in series}
    for name_ in dict.fromkeys(m for ms in drawn.values() for m in ms):
        chosen = [(s, st) for s, st in zip(series, stats) if name_ in drawn[s.label]]
        judged = [(s, st) for s, st in chosen if name_ == (metric or s.headline)]
        curves = [_curve(s, st, name_) for s, st in chosen]
        name = f"{tag}{_safe(name_)}_vs_sparsity.png"
        written.append(figures.plot_metric_bands(curves, name_, out / name,
                                                 title=f"{name_} vs scope sparsity"))
        role = "the metric of the matching verdicts" if judged else "also reported by the task; no verdict"
        caption = (f"{name_} ({role}) against scope sparsity: mean over seeds, band ±1 sample std, dashed "
                   f"line the dense (level 0) mean of each series. Series: {series_text([s for s, _ in chosen])}."
                   + (" Matching: " + "; ".join(_matching_text(s, st, name_) for s, st in judged) + "."
                      if judged else ""))
        blocks.append(Block(heading=f"{heading}{name_} vs sparsity", image=name, caption=caption,
                            data=[summary_csv]))
    return blocks
