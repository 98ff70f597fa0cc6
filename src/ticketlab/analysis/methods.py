"""The report's method comparison: IMP with weight rewinding, IMP with learning-rate rewinding and
pruning at initialisation on one metric-vs-sparsity figure, each series named by its method.

Drawn when the runs hold at least two methods (`method_family`: the score of `prune.strategy` in
`sparsity/strategies.py`, `sparsity/pruning_at_init.py` and, for IMP, `prune.rewind_mode`); the curves are the same numbers as the headline figure, only named the
way the papers name them (Frankle & Carbin 2019; Renda et al. 2020; SNIP, GraSP, SynFlow).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ticketlab.analysis.figures import Curve, plot_metric_bands
from ticketlab.analysis.page import Block
from ticketlab.analysis.runs import LevelStats, Series, series_labels
from ticketlab.registry import STRATEGIES


def method_label(config: dict) -> str:
    """'IMP, weight rewinding (init)', 'IMP, LR rewinding', 'SNIP', 'SynFlow (layer-wise)', …"""
    strategy = dict(STRATEGIES.items()).get(str(config.get("prune.strategy")))
    if strategy is None:
        return str(config.get("prune.strategy"))
    if strategy.at_init:
        return f"{strategy.label} at {config.get('prune.rewind')}"
    if config.get("prune.rewind_mode") == "lr":
        return f"{strategy.label}, LR rewinding"
    return f"{strategy.label}, weight rewinding to {config.get('prune.rewind')}"


def method_family(config: dict) -> tuple:
    """What makes two series different methods: the score (magnitude, random, snip, …) and, for
    IMP, how levels restart; global vs layer-wise magnitude pruning is one method."""
    strategy = dict(STRATEGIES.items()).get(str(config.get("prune.strategy")))
    if strategy is None or strategy.at_init:
        return (str(config.get("prune.strategy")),)
    return strategy.score, config.get("prune.rewind_mode")


def method_sections(out: Path, series: Sequence[Series], stats: Sequence[Sequence[LevelStats]],
                    written: list[Path]) -> list[Block]:
    blocks = []
    for metric in dict.fromkeys(s.headline for s in series if s.headline is not None):
        chosen = [(s, st) for s, st in zip(series, stats) if s.headline == metric]
        if len({method_family(s.runs[0].config) for s, _ in chosen}) < 2:
            continue
        labels = [method_label(s.runs[0].config) for s, _ in chosen]
        for method in set(labels):  # the same method in several settings: add the keys they differ in
            same = [i for i, m in enumerate(labels) if m == method]
            if len(same) > 1:
                for i, extra in zip(same, series_labels([chosen[i][0].identity for i in same])):
                    labels[i] = f"{method} [{extra}]"
        curves = []
        for label, (s, st) in zip(labels, chosen):
            levels = [ls for ls in st if metric in ls.values and "sparsity_scope" in ls.values]
            curves.append(Curve(label=label, sparsity=[ls.values["sparsity_scope"].mean for ls in levels],
                                mean=[ls.values[metric].mean for ls in levels],
                                std=[ls.values[metric].std or 0.0 for ls in levels]))
        name = f"methods_{''.join(c if c.isalnum() else '_' for c in metric)}_vs_sparsity.png"
        written.append(plot_metric_bands(curves, metric, out / name,
                                         title=f"{metric} vs scope sparsity by pruning method"))
        seeds = ", ".join(f"{label}: {len(s.runs)}" for label, (s, _) in zip(labels, chosen))
        blocks.append(Block(heading=f"Pruning methods: {metric} vs sparsity", image=name,
                            data=["summary_by_series.csv"],
                            caption=(f"{metric} against scope sparsity for each pruning method, mean ± 1 std over "
                                     f"seeds (runs per method: {seeds}). IMP = iterative magnitude pruning, weights "
                                     "rewound (Frankle & Carbin 2019) or trained weights kept with the learning-rate "
                                     "schedule rewound (Renda et al. 2020); SNIP, GraSP and SynFlow prune once at "
                                     "the rewind point to each IMP level's count (Lee et al. 2019, Wang et al. "
                                     "2020, Tanaka et al. 2020).")))
    return blocks
