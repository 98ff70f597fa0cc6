"""Instability analysis over a study: `ticketlab sweep` + the `instability` and `interpolate_next`
branches of every cell, then one table of error barriers (mean ± std over seeds) per rewind point
and level, in markdown.

    python scripts/instability_study.py configs/studies/digits_instability.yaml --out runs/instability \
        --levels 0 4 8
    ticketlab report runs/instability --out report_instability     # barrier vs level and vs rewind step

Reruns resume: finished cells and branches are skipped.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from ticketlab.lottery.branches import run_branch
from ticketlab.lottery.study import run_study
from ticketlab.rundir import RunDir


def _ms(values: list[float], scale: float = 100.0) -> str:
    if not values:
        return "—"
    mean = statistics.mean(values) * scale
    return f"{mean:.2f} ± {statistics.stdev(values) * scale:.2f}" if len(values) > 1 else f"{mean:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", help="STUDY.yaml (a grid over train.seed and prune.rewind)")
    parser.add_argument("--out", required=True, help="study directory")
    parser.add_argument("--levels", type=int, nargs="+", required=True, help="levels that get the instability branch")
    parser.add_argument("--copies", type=int, default=2)
    parser.add_argument("--points", type=int, default=11)
    args = parser.parse_args()

    out = Path(args.out)
    cells = run_study(Path(args.study), out)
    rows: dict[tuple[str, int], dict[str, list[float]]] = {}
    for cell in cells:
        run = RunDir(out / "cells" / cell["name"])
        rewind = run.load_config().prune.rewind
        for level in run.finished_levels():
            row = rows.setdefault((rewind, level), {"instability": [], "next": [], "accuracy": [], "sparsity": []})
            metrics = run.read_metrics(level)
            row["accuracy"].append(metrics["accuracy"])
            row["sparsity"].append(metrics["sparsity_scope"])
            if level in args.levels:
                print(f"{cell['name']} level {level}: instability", flush=True)
                _, m = run_branch(run.level_dir(level), "instability", copies=args.copies, points=args.points)
                row["instability"].append(m["error_barrier"])
            if run.is_done(level + 1):
                _, m = run_branch(run.level_dir(level), "interpolate_next", points=args.points)
                row["next"].append(m["error_barrier"])
    print("\n| rewind | level | weights left | accuracy % | instability barrier (pp) | barrier to next level (pp) |")
    print("|---|---:|---:|---:|---:|---:|")
    for (rewind, level), row in sorted(rows.items(), key=lambda kv: (kv[0][0] != "init", kv[0][0], kv[0][1])):
        left = 100.0 * (1.0 - statistics.mean(row["sparsity"]))
        print(f"| {rewind} | {level} | {left:.1f}% | {_ms(row['accuracy'])} | {_ms(row['instability'])} | "
              f"{_ms(row['next'])} |")
    print(json.dumps({"seeds": sorted({c['values'].get('train.seed') for c in cells})}))


if __name__ == "__main__":
    main()
