"""The report's early-bird section (paper 001 Fig. 2f): how early in dense training the ticket's mask
is there, what a ticket drawn that early scores, and how much dense training the detector saves.

Reads `level_00/early_bird.json` (written by `lottery/early_bird.py`: per draw its step, distance to
the previous draw and IoU with the final draw) and the metrics of the `early_bird` branches of
level 1 (`level_01/branch_early_bird_*/metrics.json`, matched to draws by `early_bird_step`).
Runs that differ only by seed form a series: the figure and the table show each draw's mean ± std over
the series' seeds, as the paper draws Fig. 2f (the mean of 5 runs with an error band), written to
`early_bird_by_series.csv`; `early_bird.csv` keeps every run's draws.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from ticketlab.analysis import tables
from ticketlab.analysis.curve_figures import EarlyBirdLine, plot_early_bird
from ticketlab.analysis.page import Block
from ticketlab.analysis.runs import Run, Series, group_series, mean_std
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


def _stat_cells(values: Sequence[float]) -> list[object]:
    """[runs, mean, std] of `values` (std empty for one value, all empty for none)."""
    if not values:
        return [0, None, None]
    st = mean_std(values)
    return [st.n, st.mean, st.std]


def _shown(values: Sequence[float]) -> str:
    if not values:
        return "—"
    st = mean_std(values)
    return f"{st.mean:.4f}" + (f" (±{st.std:.4f})" if st.std is not None else "") + f" [{st.n}]"


@dataclass(frozen=True)
class SeriesDraws:
    """The early-bird draws of one series (its runs differ only by seed), gathered per draw step."""
    label: str
    total_steps: int
    iou_kept: dict[int, list[float]]     # step → one value per seed that drew there
    iou_pruned: dict[int, list[float]]
    retrained: dict[int, list[float]]    # step → the seeds' retrained metric (those with a branch)
    ticket: list[float]                  # the level-1 tickets' metric (runs that trained dense fully)
    fired: list[int]                     # the step at which each seed's detector fired
    stopped: bool


def series_draws(series: Series, records: dict[Path, dict]) -> SeriesDraws:
    kept: dict[int, list[float]] = {}
    pruned: dict[int, list[float]] = {}
    again: dict[int, list[float]] = {}
    ticket, fired = [], []
    for run in series.runs:
        rec = records[run.path]
        retrained_at = retrained(run, run.headline)
        for d in rec["draws"]:
            kept.setdefault(d["step"], []).append(d["iou_with_final"])
            pruned.setdefault(d["step"], []).append(d["pruned_iou_with_final"])
            if d["step"] in retrained_at:
                again.setdefault(d["step"], []).append(retrained_at[d["step"]])
        value = run.levels.get(1, {}).get(run.headline)
        if isinstance(value, float) and not rec["stop"]:
            ticket.append(value)
        if rec["fired_step"] is not None:
            fired.append(rec["fired_step"])
    first = records[series.runs[0].path]
    return SeriesDraws(label=series.label, total_steps=first["total_steps"], iou_kept=dict(sorted(kept.items())),
                       iou_pruned=pruned, retrained=again, ticket=ticket, fired=fired, stopped=first["stop"])


def _line(s: SeriesDraws) -> EarlyBirdLine:
    steps = list(s.iou_kept)

    def mean(values: list[float]) -> float:
        return mean_std(values).mean if values else math.nan

    def std(values: list[float]) -> float:
        return (mean_std(values).std or 0.0) if values else math.nan

    ticket = mean_std(s.ticket) if s.ticket else None
    return EarlyBirdLine(
        label=s.label, percent=[100 * st / s.total_steps for st in steps],
        iou_kept=[mean(s.iou_kept[st]) for st in steps], iou_kept_std=[std(s.iou_kept[st]) for st in steps],
        iou_pruned=[mean(s.iou_pruned[st]) for st in steps], iou_pruned_std=[std(s.iou_pruned[st]) for st in steps],
        retrained=[mean(s.retrained.get(st, [])) for st in steps],
        retrained_std=[std(s.retrained.get(st, [])) for st in steps],
        ticket=None if ticket is None else (ticket.mean, ticket.std or 0.0),
        fired_percent=[100 * f / s.total_steps for f in s.fired], stopped=s.stopped)


def early_bird_sections(out: Path, runs: Sequence[Run], written: list[Path]) -> list[Block]:
    found = [(run, rec) for run in runs if (rec := read_early_bird(run)) is not None]
    if not found:
        return []
    header = ["run", "seed", "step", "total_steps", "fraction", "distance_to_previous", "iou_with_final",
              "pruned_iou_with_final", "retrained_metric", "retrained"]
    rows = []
    metric = found[0][0].headline
    for run, rec in found:
        again = retrained(run, run.headline)
        for d in rec["draws"]:
            rows.append([run.label, run.seed, d["step"], rec["total_steps"], d["fraction"],
                         d["distance_to_previous"], d["iou_with_final"], d["pruned_iou_with_final"],
                         run.headline, again.get(d["step"])])
    records = {run.path: rec for run, rec in found}
    gathered = [series_draws(s, records) for s in group_series([run for run, _ in found])]
    by_series_header = ["series", "step", "fraction", "runs", "iou_with_final_mean", "iou_with_final_std",
                        "pruned_iou_with_final_mean", "pruned_iou_with_final_std",
                        "retrained_runs", "retrained_mean", "retrained_std", "ticket_runs", "ticket_mean",
                        "ticket_std"]
    by_series, shown = [], []
    for s in gathered:
        for step, kept in s.iou_kept.items():
            fraction = step / s.total_steps
            by_series.append([s.label, step, fraction, *_stat_cells(kept), *_stat_cells(s.iou_pruned[step])[1:],
                              *_stat_cells(s.retrained.get(step, [])), *_stat_cells(s.ticket)])
            shown.append([s.label, f"{100 * fraction:.0f}%", _shown(kept), _shown(s.iou_pruned[step]),
                          _shown(s.retrained.get(step, [])), _shown(s.ticket)])
    data, summary, name = "early_bird.csv", "early_bird_by_series.csv", "early_bird.png"
    written.append(tables.write_csv(out / data, (header, rows)))
    written.append(tables.write_csv(out / summary, (by_series_header, by_series)))
    written.append(plot_early_bird([_line(s) for s in gathered], metric or "metric", out / name,
                                   title="early-bird masks during dense training"))
    caption = ("Masks drawn from the dense run (level 0) part-way through training with level 1's pruning "
               "(paper 001 Fig. 2f): IoU |a ∩ b| / |a ∪ b| with the final draw (the mask level 1 uses) of the kept "
               "weights (solid) and of the pruned weights (dotted), mean over each series' seeds with a ±1 std "
               "band; triangles: the early-bird ticket retrained (`ticketlab branch RUN/level_01 early_bird "
               "--fraction F`), mean ± 1 std; dashed line and band: the level-1 ticket's mean ± 1 std. Vertical "
               "lines: where each seed's detector (distance 1 − IoU below the threshold for `patience` draws in a "
               "row) fires; dash-dotted when it ended training. " + "; ".join(saving_text(r, rec) for r, rec in found)
               + ".")
    table = (["series", "% of dense training", "IoU kept: mean (±std) [seeds]", "IoU pruned: mean (±std) [seeds]",
              f"retrained {metric}: mean (±std) [seeds]", f"level-1 ticket {metric}: mean (±std) [seeds]"], shown)
    detector = (["run", "draws", "threshold", "patience", "fired at step", "dense steps run", "steps saved"],
                [[r.label, len(rec["draws"]), rec["threshold"], rec["patience"], rec["fired_step"] or "—",
                  rec["final_step"], rec["steps_saved"]] for r, rec in found])
    return [Block(heading="Early-bird tickets", image=name, caption=caption, data=[summary, data], table=table),
            Block(heading="Early-bird detector, per run", data=[data], table=detector)]
