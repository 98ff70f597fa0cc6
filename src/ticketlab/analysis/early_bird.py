"""The report's early-bird section (paper 001 Fig. 2f): how early in dense training the ticket's mask
is there, what a ticket drawn that early scores, and how much dense training the detector saves.

Reads `level_00/early_bird.json` (written by `lottery/early_bird.py`: per draw its step, distance to
the previous draw and IoU with the final draw) and the metrics of the `early_bird` branches of
level 1 (`level_01/branch_early_bird_*/metrics.json`, matched to draws by `early_bird_step`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional, Sequence

from ticketlab.analysis import tables
from ticketlab.analysis.curve_figures import EarlyBirdLine, plot_early_bird
from ticketlab.analysis.page import Block
from ticketlab.analysis.runs import Run
from ticketlab.errors import TicketlabError
from ticketlab.rundir import EARLY_BIRD_FILE, level_name

DRAW_KEYS = {"step", "fraction", "distance_to_previous", "iou_with_final", "pruned_iou_with_final"}


def read_early_bird(run: Run) -> Optional[dict]:
    path = run.path / level_name(0) / EARLY_BIRD_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise TicketlabError(f"{path}: unreadable early-bird record ({e.__class__.__name__})") from None
    draws = record.get("draws") if isinstance(record, dict) else None
    if not draws or not all(isinstance(d, dict) and DRAW_KEYS <= set(d) for d in draws):
        raise TicketlabError(f"{path}: not an early-bird record (expected draws with {', '.join(sorted(DRAW_KEYS))})")
    return record


def retrained(run: Run, metric: Optional[str]) -> dict[int, float]:
    """early_bird_step → the headline of the level-1 branch retrained from that draw's mask."""
    out: dict[int, float] = {}
    for path in sorted((run.path / level_name(1)).glob("branch_early_bird_*/metrics.json")):
        row = json.loads(path.read_text())
        if metric in row and "early_bird_step" in row:
            out[int(row["early_bird_step"])] = float(row[metric])
    return out


def saving_text(run: Run, r: dict) -> str:
    total = r["total_steps"]
    if r["stop"]:
        return (f"{run.label}: the detector ended dense training at step {r['final_step']} of {total}, saving "
                f"{r['steps_saved']} steps ({100 * r['saved_fraction']:.0f}% of level 0)")
    if r["fired_step"] is None:
        return f"{run.label}: the detector never fired (trained all {total} steps)"
    return (f"{run.label}: the detector would have ended dense training at step {r['fired_step']} of {total}, "
            f"saving {100 * (total - r['fired_step']) / total:.0f}% of level 0")


def early_bird_sections(out: Path, runs: Sequence[Run], written: list[Path]) -> list[Block]:
    found = [(run, rec) for run in runs if (rec := read_early_bird(run)) is not None]
    if not found:
        return []
    header = ["run", "seed", "step", "total_steps", "fraction", "distance_to_previous", "iou_with_final",
              "pruned_iou_with_final", "retrained_metric", "retrained"]
    rows, lines = [], []
    metric = found[0][0].headline
    for run, rec in found:
        again = retrained(run, run.headline)
        ticket = run.levels.get(1, {}).get(run.headline)
        for d in rec["draws"]:
            rows.append([run.label, run.seed, d["step"], rec["total_steps"], d["fraction"],
                         d["distance_to_previous"], d["iou_with_final"], d["pruned_iou_with_final"],
                         run.headline, again.get(d["step"])])
        fired = rec["fired_step"]
        lines.append(EarlyBirdLine(
            label=run.label, percent=[100 * d["fraction"] for d in rec["draws"]],
            iou_kept=[d["iou_with_final"] for d in rec["draws"]],
            iou_pruned=[d["pruned_iou_with_final"] for d in rec["draws"]],
            retrained=[again.get(d["step"], math.nan) for d in rec["draws"]],
            ticket=ticket if isinstance(ticket, float) and not rec["stop"] else None,
            fired_percent=None if fired is None else 100 * fired / rec["total_steps"], stopped=rec["stop"]))
    data, name = "early_bird.csv", "early_bird.png"
    written.append(tables.write_csv(out / data, (header, rows)))
    written.append(plot_early_bird(lines, metric or "metric", out / name, title="early-bird masks during dense training"))
    caption = ("Masks drawn from the dense run (level 0) part-way through training with level 1's pruning "
               "(paper 001 Fig. 2f): IoU |a ∩ b| / |a ∪ b| with the final draw (the mask level 1 uses) of the kept "
               "weights (solid) and of the pruned weights (dotted); triangles: the early-bird ticket retrained "
               "(`ticketlab branch RUN/level_01 early_bird --fraction F`), dashed: the level-1 ticket. Vertical "
               "line: where the detector (distance 1 − IoU below the threshold for `patience` draws in a row) "
               "fires; dash-dotted when it ended training. " + "; ".join(saving_text(r, rec) for r, rec in found) + ".")
    table = (["run", "draws", "threshold", "patience", "fired at step", "dense steps run", "steps saved"],
             [[r.label, len(rec["draws"]), rec["threshold"], rec["patience"], rec["fired_step"] or "—",
               rec["final_step"], rec["steps_saved"]] for r, rec in found])
    return [Block(heading="Early-bird tickets", image=name, caption=caption, data=[data], table=table)]
