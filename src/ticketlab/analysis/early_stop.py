"""The early-stopping step of a level: the step of minimum validation loss in its history.csv.

The lottery-ticket paper's second finding (Frankle & Carbin 2019, Fig. 4–5) is that winning
tickets learn faster: the iteration of minimum validation loss comes earlier as the net is pruned,
until it rises again at extreme sparsity; reinitialised tickets do not show it. A level's
`history.csv` holds one row per evaluation (`train.eval_every`), so the step is known to that
resolution. Ties go to the earliest step. Rows without a validation loss are ignored.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Sequence

from ticketlab.analysis import tables
from ticketlab.analysis.curve_figures import plot_early_stop
from ticketlab.analysis.page import Block
from ticketlab.analysis.runs import Run, Series
from ticketlab.rundir import level_name
from ticketlab.train.history import HISTORY_FILE, read_history

VAL_LOSS = "val_loss"


@dataclass(frozen=True)
class EarlyStop:
    step: int
    val_loss: float
    metrics: dict[str, float]  # every metric of that evaluation row (accuracy, …)
    last_step: int  # the level's final evaluated step: step == last_step means no minimum inside the run


def early_stop(rows: Sequence[Mapping]) -> Optional[EarlyStop]:
    """The evaluation of minimum validation loss among `rows` (None when none has one)."""
    usable = [r for r in rows if r.get(VAL_LOSS) is not None and r.get("step") is not None]
    if not usable:
        return None
    best = min(usable, key=lambda r: (float(r[VAL_LOSS]), int(r["step"])))
    metrics = {k: float(v) for k, v in best.items() if isinstance(v, (int, float)) and k not in ("step", "epoch")}
    return EarlyStop(step=int(best["step"]), val_loss=float(best[VAL_LOSS]), metrics=metrics,
                     last_step=max(int(r["step"]) for r in usable))


def early_stop_of(level_dir: Path) -> Optional[EarlyStop]:
    """`early_stop` of a level (or branch) directory's history.csv; None when it has none."""
    path = Path(level_dir) / HISTORY_FILE
    return early_stop(read_history(path)) if path.is_file() else None


KINDS = {"ticket": "", "reinit": "branch_reinit", "random_mask": "branch_random_mask"}


def early_stop_rows(runs: Sequence[Run]) -> list[list]:
    """[run, seed, level, kind, % weights left, early-stopping step, last step] for every finished
    level of `runs` and its reinit / random_mask branches."""
    rows = []
    for run in runs:
        for level, metrics in sorted(run.levels.items()):
            for kind, sub in KINDS.items():
                where = run.path / level_name(level) / sub if sub else run.path / level_name(level)
                stop = early_stop_of(where) if (where / "metrics.json").is_file() else None
                if stop is not None:
                    left = 100.0 * (1.0 - float(metrics.get("sparsity_scope", 0.0)))
                    rows.append([run.label, run.seed, level, kind, left, stop.step, stop.last_step])
    return rows


def early_stop_section(out: Path, series: Sequence[Series], written: list[Path]) -> list[Block]:
    """The report's early-stopping figure (Frankle & Carbin Fig. 4): the step of minimum validation
    loss per level, mean ± std over each series' seeds, for tickets and the controls that exist;
    nothing when no pruned level logged a validation loss."""
    curves, all_rows = [], []
    for s in series:
        rows = early_stop_rows(s.runs)
        all_rows += [[s.label, *r] for r in rows]
        for kind in KINDS:
            levels = sorted({r[2] for r in rows if r[3] == kind})
            if not any(lv > 0 for lv in levels):
                continue
            steps = [[r[5] for r in rows if r[2] == lv and r[3] == kind] for lv in levels]
            left = [statistics.mean(r[4] for r in rows if r[2] == lv and r[3] == kind) for lv in levels]
            curves.append((f"{s.label}: {kind}", left, [statistics.mean(v) for v in steps],
                           [statistics.stdev(v) if len(v) > 1 else 0.0 for v in steps]))
    if not curves:
        return []
    data, name = "early_stopping.csv", "early_stopping.png"
    header = ["series", "run", "seed", "level", "kind", "weights_left_percent", "early_stop_step", "last_step"]
    written.append(tables.write_csv(out / data, (header, all_rows)))
    written.append(plot_early_stop(curves, out / name, title="early-stopping step vs weights left"))
    censored = sum(1 for r in all_rows if r[6] == r[7])
    return [Block(heading="Early stopping: do tickets learn faster?", image=name, data=[data],
                  caption="The step of minimum validation loss (from each level's history.csv, evaluated every "
                          "train.eval_every) against the % of the scope's weights left: mean ± 1 std over seeds, "
                          "for tickets and, where run, the reinit and random_mask branches (Frankle & Carbin 2019, "
                          f"Fig. 4). {censored} of {len(all_rows)} minima fall on the last evaluation, i.e. at or "
                          "after the end of training.")]
