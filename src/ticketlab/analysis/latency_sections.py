"""The report's accuracy-against-latency section, for runs that differ in `prune.granularity`.

Removing 90% of single weights and removing 50% of channels buy different things: the first leaves a
model a dense runtime runs at the dense speed, the second a smaller model. When the series of a
report differ in granularity, sparsity is not the axis to compare them on, so the report also draws
each series' headline metric against the latency of its levels as deployed, with a table.

The latency is measured when the report is written, not stored per level: timings are only
comparable when taken side by side in one process on one machine at one moment, and a level's
training process shares the machine with whatever else ran then. The measuring function comes from
the caller (`ticketlab report` passes `deploy.latency.level_latency`: each level compacted, PyTorch
CPU, interleaved rounds, medians), because loading and compacting a level sits above this layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence

from ticketlab.analysis import tables
from ticketlab.analysis.curve_figures import plot_metric_vs_latency
from ticketlab.analysis.page import Block
from ticketlab.analysis.runs import LevelStats, Series, mean_std
from ticketlab.rundir import level_name

GRANULARITY_KEY = "prune.granularity"
LATENCY_CSV = "latency_by_level.csv"
LATENCY_PNG = "metric_vs_latency.png"


@dataclass(frozen=True)
class LatencyTimer:
    """Seconds per call of each level dir, measured together; `description` says how, for the caption."""
    measure: Callable[[Sequence[Path]], Mapping[Path, float]]
    description: str


def granularity(s: Series) -> str:
    return str(s.identity.get(GRANULARITY_KEY, "weight"))


def latency_section(out: Path, series: Sequence[Series], stats: Sequence[Sequence[LevelStats]],
                    written: list[Path], timer: Optional[LatencyTimer], metric: Optional[str]) -> list[Block]:
    """Nothing unless the series differ in granularity and a timer is given."""
    if timer is None or len({granularity(s) for s in series}) < 2:
        return []
    level_dirs = {(s.label, r.path, level): r.path / level_name(level)
                  for s in series for r in s.runs for level in sorted(r.levels)}
    seconds = timer.measure(list(level_dirs.values()))
    header = ["series", "granularity", "level", "runs", "scope sparsity", "latency ms", "latency std", "metric",
              "mean", "std", "matching"]
    rows, curves = [], []
    for s, st in zip(series, stats):
        judged = metric or s.headline
        xs, xstd, ys, ystd = [], [], [], []
        for ls in st:
            times = [1e3 * seconds[d] for (label, _, level), d in level_dirs.items()
                     if label == s.label and level == ls.level]
            lat = mean_std(times)
            value = ls.values.get(judged) if judged else None
            scope = ls.values.get("sparsity_scope")
            rows.append([s.label, granularity(s), ls.level, ls.runs, scope.mean if scope else None, lat.mean,
                         lat.std, judged, value.mean if value else None, value.std if value else None,
                         "—" if ls.matching is None else ("yes" if ls.matching else "no")])
            if value is not None:
                xs.append(lat.mean)
                xstd.append(lat.std or 0.0)
                ys.append(value.mean)
                ystd.append(value.std or 0.0)
        if xs:
            curves.append((s.label, xs, xstd, ys, ystd))
    written.append(tables.write_csv(out / LATENCY_CSV, (header, rows)))
    name = next((metric or s.headline for s in series if metric or s.headline), "metric")
    written.append(plot_metric_vs_latency(curves, out / LATENCY_PNG, metric=name,
                                          xlabel="latency per call, ms (mean over seeds of each level)",
                                          title=f"{name} vs measured latency"))
    caption = (f"{name} against the latency of each level as deployed, one line per series (the series differ "
               f"in {GRANULARITY_KEY}); error bars ±1 sample std over seeds on both axes. Latency: "
               f"{timer.description}. Measured when this report was written.")
    return [Block(heading=f"{name} vs latency", image=LATENCY_PNG, caption=caption, data=[LATENCY_CSV],
                  table=(header, rows))]
