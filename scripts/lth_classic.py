"""The lottery-ticket paper's classic result on one config over seeds: ticket vs dense vs the
`reinit` and `random_mask` controls across levels, with the early-stopping step of each.

For each seed, runs CONFIG (resuming whatever is already in OUT/seed_N), then the `reinit` and
`random_mask` branches of every level in --branch-levels. Then writes, from the run directories,
OUT/levels.csv (one row per seed × level × kind) and OUT/table.md (mean ± std over seeds per level:
accuracy at the early-stopping step, as the paper reports it, the final accuracy, and the
early-stopping step = step of minimum validation loss), and prints the table and the wall time.

    python scripts/lth_classic.py --config configs/fashion_mnist_lenet.yaml --out runs/lth_fashion \
        --branch-levels 3 5 7 10 13 15
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import time
from pathlib import Path

from ticketlab.analysis.early_stop import early_stop_of
from ticketlab.config import load_config
from ticketlab.lottery.branches import run_branch
from ticketlab.lottery.imp import run_imp
from ticketlab.rundir import level_name

KINDS = ("ticket", "reinit", "random_mask")


def fmt(values: list[float], digits: int = 4) -> str:
    if not values:
        return ""
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.{digits}f} ± {std:.{digits}f}"


def run_all(args: argparse.Namespace) -> dict[str, float]:
    seconds: dict[str, float] = {}
    for seed in args.seeds:
        t0 = time.perf_counter()
        cfg = load_config(args.config, [*args.set, f"train.seed={seed}"])
        run = Path(args.out) / f"seed_{seed}"
        run_imp(cfg, run, log=print)
        for level in args.branch_levels:
            for branch in KINDS[1:]:
                if not (run / level_name(level) / f"branch_{branch}" / "metrics.json").is_file():
                    run_branch(run / level_name(level), branch)
        seconds[f"seed_{seed}"] = time.perf_counter() - t0
        print(f"seed {seed}: {seconds[f'seed_{seed}']:.0f} s", flush=True)
    return seconds


def collect(args: argparse.Namespace) -> list[dict]:
    rows = []
    for seed in args.seeds:
        run = Path(args.out) / f"seed_{seed}"
        for level_dir in sorted(run.glob("level_*")):
            level = int(level_dir.name.removeprefix("level_"))
            for kind in KINDS:
                where = level_dir if kind == "ticket" else level_dir / f"branch_{kind}"
                if not (where / "metrics.json").is_file():
                    continue
                metrics = json.loads((where / "metrics.json").read_text())
                stop = early_stop_of(where)
                rows.append({"seed": seed, "level": level, "kind": kind,
                             "weights_left": 1.0 - metrics["sparsity_scope"], "accuracy": metrics["accuracy"],
                             "early_stop_step": stop.step if stop else None,
                             "early_stop_accuracy": stop.metrics.get("accuracy") if stop else None,
                             "last_step": stop.last_step if stop else None})
    return rows


def table(rows: list[dict]) -> str:
    def pick(level: int, kind: str, key: str) -> list[float]:
        return [r[key] for r in rows if r["level"] == level and r["kind"] == kind and r[key] is not None]

    dense = pick(0, "ticket", "early_stop_accuracy")
    dense_line = statistics.mean(dense) - (statistics.stdev(dense) if len(dense) > 1 else 0.0)
    lines = ["| level | weights left | ticket | matching | reinit | random mask | ticket final | "
             "early-stop step: ticket | reinit | random mask |",
             "|---:|---:|---:|:---:|---:|---:|---:|---:|---:|---:|"]
    for level in sorted({r["level"] for r in rows}):
        left = pick(level, "ticket", "weights_left")
        ticket = pick(level, "ticket", "early_stop_accuracy")
        matching = "—" if level == 0 else ("yes" if statistics.mean(ticket) >= dense_line else "no")
        cells = [str(level), f"{statistics.mean(left):.1%}", fmt(ticket), matching,
                 fmt(pick(level, "reinit", "early_stop_accuracy")), fmt(pick(level, "random_mask", "early_stop_accuracy")),
                 fmt(pick(level, "ticket", "accuracy")),
                 *(fmt(pick(level, kind, "early_stop_step"), 0) for kind in KINDS)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--branch-levels", type=int, nargs="*", default=[], help="levels that get reinit and random_mask")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    args = parser.parse_args()

    t0 = time.perf_counter()
    seconds = run_all(args)
    out = Path(args.out)
    rows = collect(args)
    with open(out / "levels.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    text = table(rows)
    (out / "table.md").write_text(text)
    total = time.perf_counter() - t0
    (out / "timing.json").write_text(json.dumps({"wall_seconds_this_call": total, "per_seed": seconds}, indent=1))
    print(text)
    print(f"wall time of this call: {total:.0f} s ({', '.join(f'{k} {v:.0f} s' for k, v in seconds.items())})")


if __name__ == "__main__":
    main()
