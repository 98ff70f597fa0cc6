"""The report's convergence section (paper 001 Fig. 10): does a ticket train as fast as the dense
network? Loss and headline metric against epoch for level 0 and the ticket level of every run, read
from each level's `history.csv` (one row per evaluation). The loss is the validation loss where the
task logs one (`val_loss`, classification), else the training loss averaged since the previous row.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ticketlab.analysis import tables
from ticketlab.analysis.curve_figures import HistoryLine, plot_convergence
from ticketlab.analysis.page import Block
from ticketlab.analysis.runs import Run
from ticketlab.rundir import level_name
from ticketlab.train.history import HISTORY_FILE, read_history


def _column(rows: Sequence[dict], key: str) -> list[float]:
    return [float(r[key]) for r in rows if r.get(key) is not None]


def convergence_section(out: Path, runs: Sequence[Run], level: int, written: list[Path]) -> list[Block]:
    """Curves of level 0 and of `level` (the mask figures' level; when that is 0, the last level any
    run finished); nothing when no run has a pruned level."""
    ticket = level if level > 0 else max(max(r.levels) for r in runs)
    histories = []
    for i, run in enumerate(runs):
        for lv in (0, ticket):
            path = run.path / level_name(lv) / HISTORY_FILE
            if lv in run.levels and path.is_file():
                histories.append((i, run, lv, [r for r in read_history(path) if r.get("epoch") is not None]))
    if not any(lv > 0 for _, _, lv, _ in histories):
        return []
    loss = "val_loss" if all(any(r.get("val_loss") is not None for r in h) for *_, h in histories) else "loss"
    metric = runs[0].headline or "metric"
    lines, rows = [], []
    for i, run, lv, hist in histories:
        usable = [r for r in hist if r.get(loss) is not None]
        lines.append(HistoryLine(label=f"{run.label} level {lv}", dashed=lv > 0, epoch=_column(usable, "epoch"),
                                 loss=_column(usable, loss),
                                 metric=_column(usable, metric) if len(_column(usable, metric)) == len(usable) else []))
        rows += [[run.label, run.seed, lv, r["step"], r["epoch"], r.get(loss), r.get(metric)] for r in usable]
    data, name = f"convergence_level_{ticket:02d}.csv", f"convergence_level_{ticket:02d}.png"
    written.append(tables.write_csv(out / data, (["run", "seed", "level", "step", "epoch", loss, metric], rows)))
    written.append(plot_convergence(lines, loss, metric, out / name, colors=[i for i, *_ in histories],
                                    title=f"training curves: dense (solid) vs level {ticket} ticket (dashed)"))
    what = "validation loss" if loss == "val_loss" else "training loss (mean since the previous evaluation)"
    return [Block(heading="Convergence: dense vs ticket", image=name, data=[data],
                  caption=f"{what} and {metric} against epoch, from each level's history.csv (paper 001 Fig. 10): "
                          f"level 0 (solid) and level {ticket} (dashed) of "
                          + ", ".join(f"{r.label} (seed {r.seed})" for r in runs) + ".")]
