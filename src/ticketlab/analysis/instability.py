"""The report's linear-mode-connectivity section: error barriers of the `instability` branches
(Frankle et al., ICML 2020) and of the `interpolate_next` paths between consecutive levels (Paul et
al., 2022), read from `level_NN/branch_{instability,interpolate_next}/metrics.json`.

Two figures: the barrier against scope sparsity per series (mean ± std over seeds; dashed: level k
to level k+1), and — when runs that are equal but for the seed and `prune.rewind` were analysed at
several rewind points — the instability barrier against the rewind step, one line per level
(the paper's "instability vs rewind iteration", which explains why late resetting works).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from ticketlab.analysis import tables
from ticketlab.analysis.curve_figures import SweepCurve, plot_sweep
from ticketlab.analysis.figures import Curve, plot_metric_bands
from ticketlab.analysis.page import Block
from ticketlab.analysis.runs import Series, mean_std, series_labels
from ticketlab.errors import TicketlabError
from ticketlab.rundir import level_name

BRANCHES = {"instability": "instability", "interpolate_next": "level k → k+1"}
FILE = "instability.csv"


def barrier_rows(series: Sequence[Series]) -> list[dict]:
    rows = []
    for s in series:
        for run in s.runs:
            for level in sorted(run.levels):
                for branch in BRANCHES:
                    path = run.path / level_name(level) / f"branch_{branch}" / "metrics.json"
                    if not path.is_file():
                        continue
                    try:
                        m = json.loads(path.read_text())
                        rows.append({"series": s.label, "run": run.label, "seed": run.seed, "level": level,
                                     "branch": branch, "sparsity_scope": float(m["sparsity_scope"]),
                                     "rewind": m["rewind"], "rewind_step": int(m["rewind_step"]),
                                     "error_barrier": float(m["error_barrier"]),
                                     "loss_barrier": m.get("loss_barrier"), "headline": m.get("headline")})
                    except (OSError, ValueError, KeyError, TypeError) as e:
                        raise TicketlabError(f"{path}: not a barrier record written by `ticketlab branch` "
                                             f"({e.__class__.__name__})") from None
    return rows


def _by_level(rows: Sequence[dict]) -> Curve | None:
    levels = sorted({r["level"] for r in rows})
    if not levels:
        return None
    stats = [mean_std([r["error_barrier"] for r in rows if r["level"] == lv]) for lv in levels]
    sparsity = [mean_std([r["sparsity_scope"] for r in rows if r["level"] == lv]).mean for lv in levels]
    return Curve(label="", sparsity=sparsity, mean=[100 * s.mean for s in stats],
                 std=[100 * (s.std or 0.0) for s in stats])


def _vs_sparsity(out: Path, series: Sequence[Series], rows: Sequence[dict], written: list[Path]) -> Block:
    curves = []
    for s in series:
        for branch, what in BRANCHES.items():
            c = _by_level([r for r in rows if r["series"] == s.label and r["branch"] == branch])
            if c is not None:
                curves.append(Curve(label=f"{s.label}: {what}", sparsity=c.sparsity, mean=c.mean, std=c.std))
    name = "error_barrier_vs_sparsity.png"
    written.append(plot_metric_bands(curves, "error barrier (percentage points)", out / name,
                                     title="linear-path error barrier vs scope sparsity"))
    return Block(heading="Instability: error barrier vs sparsity", image=name, data=[FILE], caption=(
        "Error barrier = largest error (1 − headline) on the straight line between two networks minus the mean "
        "error of its ends, BatchNorm statistics recomputed at each point. 'instability': two copies of the level "
        "trained from its start weights with different data orders (Frankle et al. 2020; stable ≈ 0, the paper's "
        "threshold 2 points); 'level k → k+1': this level's trained weights to the next level's (Paul et al. "
        "2022). Mean ± 1 std over seeds."))


def _vs_rewind(out: Path, series: Sequence[Series], rows: Sequence[dict], written: list[Path]) -> list[Block]:
    inst = [r for r in rows if r["branch"] == "instability"]
    steps = sorted({r["rewind_step"] for r in inst})
    if len(steps) < 2:
        return []
    family = {s.label: tuple(sorted((k, repr(v)) for k, v in s.identity.items() if k != "prune.rewind"))
              for s in series}
    families = list(dict.fromkeys(family.values()))
    names = dict(zip(families, series_labels([dict(f) for f in families]))) if len(families) > 1 else {}
    shown = {st: sorted({r["rewind"] for r in inst if r["rewind_step"] == st}) for st in steps}
    x_labels = [f"{st} ({'/'.join(shown[st])})" for st in steps]
    curves = []
    for fam in families:
        for level in sorted({r["level"] for r in inst}):
            pts = {st: [r["error_barrier"] for r in inst if family[r["series"]] == fam and r["level"] == level
                        and r["rewind_step"] == st] for st in steps}
            if sum(1 for v in pts.values() if v) < 2:
                continue
            stats = {st: mean_std(v) for st, v in pts.items() if v}
            label = f"level {level}" + (f" ({names[fam]})" if names else "")
            curves.append(SweepCurve(label, [(100 * stats[st].mean, 100 * (stats[st].std or 0.0)) if st in stats
                                             else None for st in steps], [None] * len(steps)))
    if not curves:
        return []
    name = "instability_vs_rewind_step.png"
    written.append(plot_sweep(x_labels, curves, out / name, x_name="rewind step (prune.rewind)",
                              metric="error barrier (percentage points)", title="instability vs rewind step"))
    return [Block(heading="Instability vs rewind step", image=name, data=[FILE], caption=(
        "Error barrier between two copies trained from the rewind point with different data orders, against the "
        "rewind step (Frankle et al. 2020): a subnetwork is stable once its barrier is ~0, which is "
        "where IMP with late resetting finds matching tickets. One line per level; mean ± 1 std over seeds."))]


def instability_sections(out: Path, series: Sequence[Series], written: list[Path]) -> list[Block]:
    rows = barrier_rows(series)
    if not rows:
        return []
    keys = list(rows[0])
    written.append(tables.write_csv(out / FILE, (keys, [[r[k] for k in keys] for r in rows])))
    return [_vs_sparsity(out, series, rows, written), *_vs_rewind(out, series, rows, written)]
