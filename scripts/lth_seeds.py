"""A lottery-ticket result over seeds: IMP with one config per seed, plus the reinit control.

For each seed, runs CONFIG (resuming whatever is already in OUT/seed_N) and, with --level-from L,
the `reinit` branch of every level from L on; then prints, per level, METRIC mean ± std over seeds
for the ticket (and its reinit control), and whether the ticket is *matching* (≥ dense mean − 1 std,
the definition both papers use).

    python scripts/lth_seeds.py --config configs/digits_lenet.yaml --metric accuracy \
        --out runs/lth_digits --level-from 6 --set prune.levels=16
    ticketlab data synth --out data/synth
    python scripts/lth_seeds.py --config configs/synth_fasterrcnn_lite.yaml --metric bbox_AP50 --out runs/lth_synth
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from ticketlab.config import load_config
from ticketlab.lottery.branches import run_branch
from ticketlab.lottery.imp import run_imp


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--metric", required=True, help="metrics.json key to compare, e.g. accuracy, bbox_AP50")
    parser.add_argument("--out", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--level-from", type=int, help="first level that gets a reinit branch (default: none)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    args = parser.parse_args()

    ticket: dict[int, list[float]] = {}
    reinit: dict[int, list[float]] = {}
    kept: dict[int, float] = {}
    for seed in args.seeds:
        cfg = load_config(args.config, [*args.set, f"train.seed={seed}"])
        run = Path(args.out) / f"seed_{seed}"
        rows = run_imp(cfg, run, log=lambda s: None)
        for row in rows:
            level = row["level"]
            ticket.setdefault(level, []).append(row[args.metric])
            kept[level] = 1.0 - row["sparsity_scope"]
            if args.level_from is not None and level >= args.level_from:
                branch = run / f"level_{level:02d}" / "branch_reinit"
                if (branch / "metrics.json").is_file():
                    metrics = json.loads((branch / "metrics.json").read_text())
                else:
                    _, metrics = run_branch(run / f"level_{level:02d}", "reinit")
                reinit.setdefault(level, []).append(metrics[args.metric])

    dense_mean, dense_std = mean_std(ticket[0])
    print(f"dense {args.metric} {dense_mean:.4f} ± {dense_std:.4f} over seeds {args.seeds}")
    print(f"{'level':>5} {'kept':>7} {'ticket':>17} {'matching':>8} {'reinit':>17}")
    for level in sorted(ticket):
        t_mean, t_std = mean_std(ticket[level])
        matching = "yes" if t_mean >= dense_mean - dense_std else "no"
        r = f"{mean_std(reinit[level])[0]:.4f} ± {mean_std(reinit[level])[1]:.4f}" if level in reinit else ""
        print(f"{level:>5} {kept[level]:>7.1%} {t_mean:.4f} ± {t_std:.4f} {matching:>8} {r:>17}")


if __name__ == "__main__":
    main()
