"""The early-stopping step of a level: the step of minimum validation loss in its history.csv.

The lottery-ticket paper's second finding (Frankle & Carbin 2019, Fig. 4–5) is that winning
tickets learn faster: the iteration of minimum validation loss comes earlier as the net is pruned,
until it rises again at extreme sparsity; reinitialised tickets do not show it. A level's
`history.csv` holds one row per evaluation (`train.eval_every`), so the step is known to that
resolution. Ties go to the earliest step. Rows without a validation loss are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Sequence

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
