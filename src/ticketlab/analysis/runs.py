"""Run directories as data: read them, group seeds of one experiment into a series, aggregate.

A lottery-ticket claim is about an experiment, not one seed: both papers report each level's metric
as mean ± std over runs and call a sparse level *matching* when its mean is at least the dense
mean minus one standard deviation. Runs whose configs are equal except for `train.seed` (and the
keys that only say how far or where a run went: `prune.levels`, `train.device`, `data.num_workers`)
form one series. Reading goes through `RunDir` (DESIGN.md run-dir contract): a level counts when
its `metrics.json` exists, and a level's mask is read after the checks every reader of a level makes
(`sparsity.level_files.check_level`: a truncated or mismatched mask or weights file stops the report
with one line naming it, rather than drawing figures from a level that cannot be trusted).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Optional, Sequence

import torch

from ticketlab.config import flatten, to_dict
from ticketlab.errors import TicketlabError
from ticketlab.registry import TASKS
from ticketlab.sparsity.level_files import check_level
from ticketlab.rundir import RESUMABLE_CHANGES, RunDir, TaskRecord, level_name

SPARSITY_KEYS = ("sparsity_scope", "sparsity_network")
NOT_METRICS = {"level", "kept_scope", "scope_size", "steps", "seconds"}
SERIES_IGNORES = {"train.seed"} | set(RESUMABLE_CHANGES)


@dataclass(frozen=True)
class Run:
    """One run directory: its resolved config (flattened) and each finished level's metrics."""
    path: Path
    label: str
    config: dict
    levels: dict[int, dict]
    record: Optional[TaskRecord] = None  # RUN_DIR/task.json (or the registered task's, for older runs)

    @property
    def seed(self) -> int:
        return self.config["train.seed"]

    @property
    def task(self) -> str:
        return self.config["task"]

    @property
    def headline(self) -> Optional[str]:
        return self.record.headline if self.record is not None else None

    @property
    def higher_is_better(self) -> bool:
        return self.record.higher_is_better if self.record is not None else True

    def mask(self, level: int) -> dict[str, torch.Tensor]:
        if level not in self.levels:
            raise TicketlabError(f"{self.path}: level {level} is not finished (finished: "
                                 f"{', '.join(map(str, sorted(self.levels)))})")
        return check_level(self.path / level_name(level)).mask


def load_run(path: Path, label: Optional[str] = None) -> Run:
    path = Path(path)
    if not path.exists():
        raise TicketlabError(f"{path}: no such run directory")
    if not path.is_dir():
        raise TicketlabError(f"{path}: not a directory (expected a run directory holding config.yaml)")
    if path.name.startswith("level_") and (path.parent / "config.yaml").is_file():
        raise TicketlabError(f"{path} is a level directory; give its run directory {path.parent}")
    run = RunDir(path)
    config = flatten(to_dict(run.recorded_config()))  # old and new seeds of a resumed study group together
    levels = {k: run.read_metrics(k) for k in run.finished_levels()}
    if not levels:
        raise TicketlabError(f"{path}: no finished level yet (no level_NN/metrics.json)")
    return Run(path=path, label=label or path.name, config=config, levels=levels,
               record=run.task_record() or registered_record(config["task"]))


def registered_record(task: str) -> Optional[TaskRecord]:
    """The task record of a run dir written before RUN_DIR/task.json: its registered task's."""
    known = TASKS.find(task)
    return known.record() if known is not None else None


def run_labels(paths: Sequence[Path]) -> list[str]:
    """Short unique labels: each directory's name, with as many parent names as it takes to tell
    equal names apart."""
    paths = [Path(p) for p in paths]
    labels = []
    for p in paths:
        depth = 1
        while True:
            label = "/".join(p.parts[-depth:])
            clash = [q for q in paths if q != p and "/".join(q.parts[-depth:]) == label]
            if not clash or depth >= len(p.parts):
                break
            depth += 1
        labels.append(label)
    return labels


def load_runs(paths: Sequence[Path]) -> list[Run]:
    if not paths:
        raise TicketlabError("report: give at least one run directory")
    resolved = [Path(p).resolve() for p in paths]
    seen = set()
    for given, p in zip(paths, resolved):
        if p in seen:
            raise TicketlabError(f"{given}: run directory given twice")
        seen.add(p)
    return [load_run(Path(p), label) for p, label in zip(paths, run_labels(resolved))]


# -- series ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Series:
    """Runs of one experiment that differ only by seed."""
    label: str
    runs: tuple[Run, ...]
    identity: dict = field(repr=False)

    @property
    def seeds(self) -> list[int]:
        return [r.seed for r in self.runs]

    @property
    def headline(self) -> Optional[str]:
        return self.runs[0].headline

    def higher_is_better(self, metric: str) -> bool:
        record = self.runs[0].record
        return record.higher_is_better_for(metric) if record is not None else not metric.endswith("loss")


def series_identity(run: Run) -> dict:
    """What makes a run one experiment: its config but the seed and the keys that only say how far or where it ran."""
    return {k: v for k, v in run.config.items() if k not in SERIES_IGNORES}


def _value(v) -> str:
    return "null" if v is None else str(v)


def series_labels(identities: Sequence[Mapping]) -> list[str]:
    """Name each series by the config keys in which the series differ (e.g. 'prune.strategy=layerwise');
    a lone series by its model and strategy."""
    if len(identities) == 1:
        c = identities[0]
        return [f"{c.get('model.family')} · {c.get('prune.strategy')}"]
    keys = sorted({k for c in identities for k in c})
    differ = [k for k in keys if len({repr(c.get(k)) for c in identities}) > 1]

    def label(c: Mapping, shown: Sequence[str]) -> str:
        more = " …" if len(shown) < len(differ) else ""
        return ", ".join(f"{k}={_value(c.get(k))}" for k in shown) + more

    labels = [label(c, differ[:3]) for c in identities]
    if len(set(labels)) < len(labels):  # the first three keys do not tell them apart: show all
        labels = [label(c, differ) for c in identities]
    return labels


def group_series(runs: Sequence[Run]) -> list[Series]:
    """Runs grouped by config (seed aside), in the order each experiment first appears."""
    groups: list[tuple[dict, list[Run]]] = []
    for run in runs:
        ident = series_identity(run)
        for g_ident, members in groups:
            if g_ident == ident:
                members.append(run)
                break
        else:
            groups.append((ident, [run]))
    labels = series_labels([g for g, _ in groups])
    return [Series(label=label, runs=tuple(members), identity=ident)
            for label, (ident, members) in zip(labels, groups)]


# -- aggregation -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stat:
    """Mean and sample standard deviation (ddof=1; None with fewer than two values) of n values."""
    mean: float
    std: Optional[float]
    n: int


def mean_std(values: Iterable[float]) -> Stat:
    vals = [float(v) for v in values]
    if not vals:
        raise ValueError("mean_std of no values")
    return Stat(mean=statistics.mean(vals), std=statistics.stdev(vals) if len(vals) > 1 else None, n=len(vals))


def is_matching(mean: float, dense: Stat, higher_is_better: bool = True) -> bool:
    """Both papers' definition: at least the dense mean minus one standard deviation (a lone dense
    run has no spread: then at least the dense value); for a metric where lower is better, at most
    the dense mean plus one standard deviation."""
    if higher_is_better:
        return mean >= dense.mean - (dense.std or 0.0)
    return mean <= dense.mean + (dense.std or 0.0)


@dataclass(frozen=True)
class LevelStats:
    level: int
    runs: int                      # how many runs of the series finished this level
    values: dict[str, Stat]        # sparsity_scope, sparsity_network, then every metric
    matching: Optional[bool]       # headline vs the dense level; None without a headline or level 0


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def metric_keys(runs: Sequence[Run], head: Optional[str] = None) -> list[str]:
    """Numeric keys of the runs' metrics: sparsities first, then `head` (default: the headline),
    then the rest in the order they first appear (bookkeeping such as steps and seconds left out)."""
    keys: list[str] = []
    for run in runs:
        for row in run.levels.values():
            keys += [k for k, v in row.items() if k not in keys and k not in NOT_METRICS and _is_number(v)]
    head = head or (runs[0].headline if runs else None)
    lead = [k for k in SPARSITY_KEYS if k in keys] + ([head] if head in keys and head not in SPARSITY_KEYS else [])
    return lead + [k for k in keys if k not in lead]


def check_metric(runs: Sequence[Run], metric: Optional[str]) -> None:
    """`--metric`: every run must have recorded it at some level (any metric a level recorded)."""
    if metric is None:
        return
    for run in runs:
        recorded = metric_keys([run])
        if metric not in recorded:
            raise TicketlabError(f"--metric {metric}: not recorded by any level of {run.path} (recorded: "
                                 f"{', '.join(k for k in recorded if k not in SPARSITY_KEYS)})")


def curve_metrics(series: Series, metric: Optional[str] = None) -> list[str]:
    """The metrics to draw against sparsity: the verdict's (`metric`, default the headline) first,
    then the others the task reports (Mask R-CNN: segm and bbox AP), when the runs recorded them."""
    record = series.runs[0].record
    head = metric or series.headline
    wanted = ([head] if head else []) + [m for m in (record.metrics if record else ()) if m != head]
    recorded = set(metric_keys(series.runs))
    return [m for m in wanted if m in recorded]


def aggregate(series: Series, metric: Optional[str] = None) -> list[LevelStats]:
    """Per level (every level any run finished): mean/std of each metric over the runs that have it,
    and the matching verdict of `metric` (default: the headline) against the series' dense level."""
    head = metric or series.headline
    keys = metric_keys(series.runs, head)
    levels = sorted({lv for r in series.runs for lv in r.levels})
    out: list[LevelStats] = []
    dense: Optional[Stat] = None
    for level in levels:
        rows = [r.levels[level] for r in series.runs if level in r.levels]
        values = {}
        for k in keys:
            vals = [row[k] for row in rows if _is_number(row.get(k))]
            if vals:
                values[k] = mean_std(vals)
        if level == 0 and head in values:
            dense = values[head]
        matching = None
        if level > 0 and dense is not None and head in values:
            matching = is_matching(values[head].mean, dense, series.higher_is_better(head))
        out.append(LevelStats(level=level, runs=len(rows), values=values, matching=matching))
    return out


def common_levels(runs: Sequence[Run]) -> list[int]:
    levels = set(runs[0].levels)
    for r in runs[1:]:
        levels &= set(r.levels)
    return sorted(levels)


def matches_in_every_series(stats: Sequence[Sequence[LevelStats]], level: int) -> bool:
    """No series' headline has stopped matching at `level` (a series without a verdict there never objects)."""
    return all(ls.matching is not False for series_stats in stats for ls in series_stats if ls.level == level)


def default_level(runs: Sequence[Run], stats: Sequence[Sequence[LevelStats]]) -> int:
    """The level for mask figures: the sparsest level every run finished at which no series' headline
    has stopped matching (a series without a headline never objects). When no pruned level qualifies,
    the sparsest level every run finished: level 0's masks are dense, there is nothing to draw."""
    common = common_levels(runs)
    if not common:
        raise TicketlabError("report: the runs have no finished level in common; choose one with --level")
    ok = [lv for lv in common if lv > 0 and matches_in_every_series(stats, lv)]
    return ok[-1] if ok else common[-1]
