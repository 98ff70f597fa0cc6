"""The numbers of a transfer matrix that paper 001's tables show: `OUT/columns.csv`.

Paper 001's transfer tables (Tables 1, 2, 4, 5) give, per source row and per target task, the network
sparsity and several metrics at once — box mAP and AP50 *and* mask mAP and AP50 of one Mask R-CNN —
where `matrix.csv` holds the one metric a cell is judged by. A target lists what to show under
`columns:` in the spec; for every row × such target this writes one line per column metric: its mean
and std over seeds at the cell's last level, the network sparsity, and how much of the transferred
tensors the transfer pruned (`init.json`'s `sparsity_transferred`: the backbone's "Prune %" of Tables
1–2 and 4; empty for rows that transfer nothing). `analysis/transfer_table.py` draws the table.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Callable, Optional

from ticketlab.analysis.runs import mean_std
from ticketlab.atomic import atomic_write_json, atomic_write_text
from ticketlab.config import Config
from ticketlab.errors import TicketlabError
from ticketlab.lottery.matrix_spec import MatrixSpec
from ticketlab.rundir import INIT_FILE, MATRIX_COLUMNS_FILE as COLUMNS_FILE, MATRIX_FILE, RunDir

FIELDS = ["source", "target", "metric", "mean", "std", "seeds", "sparsity_network", "sparsity_transferred"]


def _transferred(run_dir: Path) -> Optional[float]:
    path = Path(run_dir) / INIT_FILE
    if not path.is_file():
        return None
    try:
        transfer = json.loads(path.read_text()).get("transfer")
        return None if transfer is None else float(transfer["sparsity_transferred"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        raise TicketlabError(f"{path}: unreadable init record (expected transfer.sparsity_transferred)") from None


def column_rows(spec: MatrixSpec, cells: dict[str, tuple[Config, Path]], slug: Callable[[str], str]) -> list[dict]:
    """One line per (row, target with `columns`, column metric), in table order; `cells` as
    `matrix.matrix_cells` names them (`slug` makes a row or target name a directory name)."""
    out = []
    for column, target in spec.targets.items():
        if not target.columns:
            continue
        for row in spec.rows():
            runs = [cells[f"{slug(row.name)}/{slug(column)}/seed_{seed}"] for seed in spec.seeds_of(column)]
            lasts = [(RunDir(d).read_metrics(cfg.prune.levels), d) for cfg, d in runs]
            network = mean_std(float(last["sparsity_network"]) for last, _ in lasts).mean
            moved = [_transferred(d) for _, d in lasts]
            transferred = None if None in moved else mean_std(moved).mean
            for metric in target.columns:
                missing = [str(d) for last, d in lasts if metric not in last]
                if missing:
                    raise TicketlabError(f"targets.{column}.columns: metric {metric!r} not in the metrics of "
                                         f"{missing[0]} ({', '.join(lasts[0][0])})")
                stat = mean_std(float(last[metric]) for last, _ in lasts)
                out.append({"source": row.name, "target": column, "metric": metric, "mean": stat.mean,
                            "std": stat.std or 0.0, "seeds": stat.n,
                            "sparsity_network": network,
                            "sparsity_transferred": "" if transferred is None else transferred})
    return out


def write_columns(spec: MatrixSpec, rows: list[dict], out: Path) -> None:
    """OUT/matrix.json, and OUT/columns.csv (none when no target lists `columns`)."""
    atomic_write_json(Path(out) / MATRIX_FILE, {"paper": spec.paper, "spec": str(spec.path), "seeds":
                                                {t: spec.seeds_of(t) for t in spec.targets},
                                                "targets": list(spec.targets)})
    if not rows:  # a spec that no longer lists columns leaves no stale table behind
        (Path(out) / COLUMNS_FILE).unlink(missing_ok=True)
        return
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(Path(out) / COLUMNS_FILE, buf.getvalue())
