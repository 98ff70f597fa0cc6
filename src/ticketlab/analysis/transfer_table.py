"""Paper 001's transfer tables (Tables 1, 2, 4, 5) from a transfer-matrix directory, in the paper's form.

The paper lays them out as one row per source (the ImageNet ticket at a prune %, a mask transfer, the
ticket of another task; 0% = dense) and, per target task, the network sparsity and the task's mAP and
AP50 side by side — Mask R-CNN's detection and segmentation numbers come from the same network. The
matrix writes those numbers to `OUT/columns.csv` (`lottery/matrix_columns.py`, one line per source ×
target × metric named under the target's `columns:`); this pivots them into that table and is the
report's block for it, headed "Paper <paper> — …" when the spec names its table.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Optional, Sequence

from ticketlab.analysis import tables
from ticketlab.analysis.page import Block
from ticketlab.errors import TicketlabError
from ticketlab.rundir import MATRIX_COLUMNS_FILE as COLUMNS_FILE, MATRIX_FILE


def is_transfer_table(path: Path) -> bool:
    """A transfer-matrix directory whose targets list `columns` (it wrote columns.csv)."""
    return (Path(path) / COLUMNS_FILE).is_file()


def read_columns(path: Path) -> list[dict]:
    file = Path(path) / COLUMNS_FILE
    try:
        with open(file, newline="") as f:
            rows = list(csv.DictReader(f))
        for r in rows:
            for key in ("mean", "std", "sparsity_network"):
                r[key] = float(r[key])
            r["seeds"] = int(r["seeds"])
            r["sparsity_transferred"] = float(r["sparsity_transferred"]) if r["sparsity_transferred"] else None
    except (OSError, ValueError, KeyError, TypeError, csv.Error) as e:
        raise TicketlabError(f"{file}: not a columns file written by `ticketlab transfer-matrix` "
                             f"({e.__class__.__name__})") from None
    if not rows:
        raise TicketlabError(f"{file}: no rows; rerun `ticketlab transfer-matrix`")
    return rows


def _value(r: dict) -> str:
    return f"{r['mean']:.4f}" + (f" (±{r['std']:.4f})" if r["seeds"] > 1 else "")


def _pct(v: Optional[float]) -> str:
    return "—" if v is None else f"{100.0 * v:.2f}%"


def paper_table(rows: Sequence[dict]) -> tuple[list[str], list[list[object]]]:
    """Sources down, and per target: the network sparsity, the share of the transferred tensors that is
    pruned (the backbone's "Prune %"; — where nothing is transferred) and each column metric, mean
    (± std over seeds, when there are several)."""
    sources = list(dict.fromkeys(r["source"] for r in rows))
    targets = list(dict.fromkeys(r["target"] for r in rows))
    metrics = {t: list(dict.fromkeys(r["metric"] for r in rows if r["target"] == t)) for t in targets}
    cell = {(r["source"], r["target"], r["metric"]): r for r in rows}
    header = ["source"]
    for t in targets:
        header += [f"{t}: network sparsity", f"{t}: transferred pruned", *(f"{t}: {m}" for m in metrics[t])]
    body = []
    for s in sources:
        line: list[object] = [s]
        for t in targets:
            first = cell[(s, t, metrics[t][0])]
            line += [_pct(first["sparsity_network"]), _pct(first["sparsity_transferred"]),
                     *(_value(cell[(s, t, m)]) for m in metrics[t])]
        body.append(line)
    return header, body


def _paper(path: Path) -> Optional[str]:
    file = Path(path) / MATRIX_FILE
    try:
        return json.loads(file.read_text()).get("paper") if file.is_file() else None
    except (OSError, ValueError, AttributeError):
        raise TicketlabError(f"{file}: unreadable matrix record") from None


def transfer_table_block(out: Path, path: Path, written: list[Path]) -> Block:
    """The paper-form table of the matrix at `path`, its CSV written into `out`."""
    rows = read_columns(path)
    header, body = paper_table(rows)
    tag = "".join(c if c.isalnum() else "_" for c in Path(path).resolve().name)
    data = f"{tag}_paper_table.csv"
    written.append(tables.write_csv(Path(out) / data, (header, body)))
    paper = _paper(path)
    title = "sources × targets in the paper's form"
    seeds = {r["target"]: r["seeds"] for r in rows}  # a target's own `seeds:` may differ from the others'
    runs = ", ".join(f"{t} {n}" for t, n in seeds.items())
    return Block(heading=f"Paper {paper} — {title}" if paper else f"Transfer matrix {path}: {title}",
                 data=[data], table=(header, body),
                 paragraphs=[f"Transfer matrix {path}: one row per source, per target the network sparsity at "
                             f"the cell's last level, how much of the transferred tensors the transferred mask "
                             f"prunes (the backbone's \"Prune %\" of paper 001 Tables 1, 2 and 4; — where nothing "
                             f"is transferred) and the metrics the spec's `columns:` name, mean over each "
                             f"target's seeds ({runs})" + (" ± sample std where there are several"
                                                           if max(seeds.values()) > 1 else "") +
                             ". The matching verdicts are in matrix.md."])
