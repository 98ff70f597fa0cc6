"""The classic lottery-ticket result on real data, measured: IMP on digits over 3 seeds + reinit control.

For each seed, runs `configs/digits_lenet.yaml` (resuming whatever is already in OUT) and the
`reinit` branch of every level from LEVEL_FROM on; then prints, per level, accuracy mean ± std
over seeds for the ticket and for its reinit control, and whether the ticket is *matching*
(≥ dense mean − 1 std, the definition both papers use).

    python scripts/lth_digits.py [--out runs/lth_digits] [--seeds 0 1 2]
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
    parser.add_argument("--out", default="runs/lth_digits")
    parser.add_argument("--config", default="configs/digits_lenet.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--level-from", type=int, default=6, help="first level that gets a reinit branch")
    args = parser.parse_args()

    ticket: dict[int, list[float]] = {}
    reinit: dict[int, list[float]] = {}
    kept: dict[int, float] = {}
    for seed in args.seeds:
        cfg = load_config(args.config, [f"train.seed={seed}"])
        run = Path(args.out) / f"seed_{seed}"
        rows = run_imp(cfg, run, log=lambda s: None)
        for row in rows:
            level = row["level"]
            ticket.setdefault(level, []).append(row["accuracy"])
            kept[level] = 1.0 - row["sparsity_scope"]
            if level >= args.level_from:
                branch = run / f"level_{level:02d}" / "branch_reinit"
                if (branch / "metrics.json").is_file():
                    metrics = json.loads((branch / "metrics.json").read_text())
                else:
                    _, metrics = run_branch(run / f"level_{level:02d}", "reinit")
                reinit.setdefault(level, []).append(metrics["accuracy"])

    dense_mean, dense_std = mean_std(ticket[0])
    print(f"dense accuracy {dense_mean:.4f} ± {dense_std:.4f} over seeds {args.seeds}")
    print(f"{'level':>5} {'kept':>7} {'ticket':>17} {'matching':>8} {'reinit':>17}")
    for level in sorted(ticket):
        t_mean, t_std = mean_std(ticket[level])
        matching = "yes" if t_mean >= dense_mean - dense_std else "no"
        r = f"{mean_std(reinit[level])[0]:.4f} ± {mean_std(reinit[level])[1]:.4f}" if level in reinit else ""
        print(f"{level:>5} {kept[level]:>7.1%} {t_mean:.4f} ± {t_std:.4f} {matching:>8} {r:>17}")


if __name__ == "__main__":
    main()
