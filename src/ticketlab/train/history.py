"""A level's training history as `history.csv`: one row per evaluation.

Columns: step, epoch, the task's loss terms (averaged over the rows' interval), metrics, lr,
seconds. The file is small, so it is rewritten whole (atomically) at every evaluation. Floats are
written with `repr`, so reading the file back gives the same numbers.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Iterable, Mapping

from ticketlab.atomic import atomic_write_text
from ticketlab.errors import TicketlabError
from ticketlab.rundir import HISTORY_FILE  # noqa: F401  (the run dir owns level-file names)

LEADING = ("step", "epoch")
TRAILING = ("lr", "seconds")

Row = dict[str, Any]


def columns(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """step, epoch, then every other key in order of first appearance, then lr, seconds."""
    seen: dict[str, None] = {}
    for row in rows:
        for key in row:
            seen.setdefault(key, None)
    middle = [k for k in seen if k not in LEADING and k not in TRAILING]
    return [k for k in LEADING if k in seen] + middle + [k for k in TRAILING if k in seen]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)


def format_history(rows: list[Mapping[str, Any]]) -> str:
    cols = columns(rows)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(cols)
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in cols])
    return out.getvalue()


def write_history(path: str | Path, rows: list[Mapping[str, Any]]) -> None:
    atomic_write_text(path, format_history(rows))


def _parse(text: str) -> Any:
    if text == "":
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def read_history(path: str | Path) -> list[Row]:
    """Rows of a history.csv as dicts of int / float (empty cells → None)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise TicketlabError(f"{path}: cannot read history ({e.strerror})") from None
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None or "step" not in reader.fieldnames:
        raise TicketlabError(f"{path}: not a history file (no 'step' column)")
    return [{k: _parse(v or "") for k, v in row.items()} for row in reader]


def drop_after(rows: Iterable[Mapping[str, Any]], step: int) -> list[Row]:
    """The rows written at or before `step`: what an uninterrupted run had logged by then."""
    return [dict(r) for r in rows if r["step"] is not None and r["step"] <= step]

