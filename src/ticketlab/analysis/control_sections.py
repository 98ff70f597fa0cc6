"""The report's Fig. 8 of paper 002: each ticket against its mask controls, metric vs sparsity.

The controls are the branches `ticketlab controls` (or `branch`) writes beside a level: m^c
(`branch_complement`), m_r (`branch_random_mask`), m + Δm (`branch_perturb_<f>`) and, when run, the
same mask on a fresh random init (`branch_reinit`). Per series, each is averaged over the seeds that
have it at a level and drawn at its own mean scope sparsity (m^c keeps what the ticket pruned, so it
sits at 1 − s; m_r and m + Δm keep the ticket's counts, so they sit at s).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Sequence

from ticketlab.analysis import tables
from ticketlab.analysis.mask_figures import Line, plot_controls
from ticketlab.analysis.mask_sections import short_label, short_series_text
from ticketlab.analysis.page import Block
from ticketlab.analysis.runs import Run, Series, mean_std
from ticketlab.errors import TicketlabError
from ticketlab.rundir import level_name

TICKET = "m (IMP ticket)"
SKIPPED = ("branch_early_bird",)


def control_label(branch_dir: str) -> str:
    name = branch_dir.removeprefix("branch_")
    if name.startswith("perturb_"):
        return f"m + Δm {100 * float(name.removeprefix('perturb_')):g}%"
    return {"complement": "m^c (complement)", "random_mask": "m_r (random, same counts)",
            "reinit": "m, random re-init"}.get(name, name)


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise TicketlabError(f"{path}: unreadable metrics file ({type(e).__name__})") from None


def run_points(run: Run, metric: str) -> list[tuple[str, int, float, float]]:
    """(curve, level, scope sparsity, metric) of the ticket at every pruned level and of every finished
    control branch beside it."""
    points = []
    for level, row in sorted(run.levels.items()):
        if level == 0 or metric not in row:
            continue
        points.append((TICKET, level, float(row["sparsity_scope"]), float(row[metric])))
        level_dir = run.path / level_name(level)
        for d in sorted(level_dir.glob("branch_*")):
            if d.name.startswith(SKIPPED) or not (d / "metrics.json").is_file():
                continue
            m = _read(d / "metrics.json")
            if metric in m:
                points.append((control_label(d.name), level, float(m["sparsity_scope"]), float(m[metric])))
    return points


def control_sections(out: Path, series: Sequence[Series], written: list[Path]) -> list[Block]:
    panels, table, shown = [], [], []
    for s in series:
        if s.headline is None:
            continue
        by_curve: dict[str, dict[int, list[tuple[float, float]]]] = defaultdict(lambda: defaultdict(list))
        mine = []
        for run in s.runs:
            for curve, level, x, y in run_points(run, s.headline):
                by_curve[curve][level].append((x, y))
                mine.append([short_label(s), run.label, run.seed, curve, level, x, s.headline, y])
        if len(by_curve) < 2:       # the ticket alone: no control to compare with
            continue
        table += mine
        lines = []
        for curve, per_level in by_curve.items():
            levels = sorted(per_level)
            ys = [mean_std([y for _, y in per_level[lv]]) for lv in levels]
            lines.append(Line(curve, [mean_std([x for x, _ in per_level[lv]]).mean for lv in levels],
                              [v.mean for v in ys], [v.std or 0.0 for v in ys]))
        dense = [r.levels[0][s.headline] for r in s.runs if 0 in r.levels and s.headline in r.levels[0]]
        panels.append((short_label(s), lines, mean_std(dense).mean if dense else None))
        shown.append(s)
    if not panels:
        return []
    metrics = list(dict.fromkeys(s.headline for s in shown))
    png, csv = "fig8_controls.png", "fig8_controls.csv"
    written.append(tables.write_csv(out / csv, (["series", "run", "seed", "curve", "level", "sparsity_scope",
                                                 "metric", "value"], table)))
    written.append(plot_controls(panels, " / ".join(metrics), out / png,
                                 title="IMP masks against their controls (paper 002 Fig. 8)"))
    caption = (f"{' / '.join(metrics)} of each IMP ticket m (solid) and of its controls (dashed) against scope "
               f"sparsity, mean ± std over seeds, one panel per series (grey dashed: the dense level 0): m^c keeps exactly the weights m pruned "
               f"(so it sits at 1 − s), m_r keeps m's count per tensor at random positions, m + Δm flips that "
               f"fraction of each tensor's kept weights to pruned and as many pruned ones to kept (same count, "
               f"same sparsity); all restart from the level's rewind point. Series: {short_series_text(shown)}.")
    return [Block(heading="Ticket vs mask controls (Fig. 8)", image=png, data=[csv], caption=caption)]
