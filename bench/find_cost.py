"""Benchmark: end-to-end cost of finding a ticket, in units of one dense training.

Arms, all from the same config and seed (so their level 0, the dense training, is the same run):
  iterative  IMP at rate 0.2 for --levels levels (sparsity 1 - 0.8^k);
  oneshot    one pruning level straight to the same sparsity (rate 1 - 0.8^k);
  earlybird  one-shot from the mask drawn when dense training stops early: masks are drawn at
             10%, 20%, … of level 0 and training stops once they settle (prune.early_bird_stop),
             so its level 0 costs less than one dense training.

Each arm runs `ticketlab.lottery.run_imp` in its own run dir. Its cost counts every training it
needs, the dense level 0 and the final ticket's training included: total `steps` (and `seconds`,
which include evaluation) divided by those of one full dense training (the iterative arm's level 0). The metric is the task's headline (accuracy /
bbox_AP, from the task registry) of the final level, next to the dense one. Defaults: configs/digits_lenet.yaml (about a
minute per arm on 2 cores); --config configs/synth_fasterrcnn_lite.yaml needs the synthetic scenes
(`ticketlab data synth --out data/synth`) and takes minutes per level.

    .venv/bin/python bench/find_cost.py [--config configs/digits_lenet.yaml] [--levels 5]
        [--set key=value ...] [--out DIR]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Callable

import torch

from machine import describe
from ticketlab.config import load_config
from ticketlab.lottery.imp import run_imp
from ticketlab.tasks import task_class

RATE = 0.2


def imp(config: str, overrides: list[str], out: Path) -> list[dict]:
    return run_imp(load_config(config, overrides), out, log=lambda line: print(f"  {out.name}: {line}", flush=True))


def arm_overrides(levels: int) -> dict[str, list[str]]:
    """--set lists that make each arm out of the base config."""
    oneshot = [f"prune.rate={1 - (1 - RATE) ** levels}", "prune.levels=1"]
    return {"iterative": [f"prune.rate={RATE}", f"prune.levels={levels}"],
            "oneshot": oneshot,
            # one-shot from the mask drawn when dense training stopped early (its level 0 is shorter)
            # threshold 0.1, the value You et al. (2020) use for their (Hamming) mask distance; ours is 1 − IoU
            "earlybird": [*oneshot, f"prune.early_bird={EARLY_BIRD_FRACTIONS}", "prune.early_bird_stop=true",
                          "prune.early_bird_threshold=0.1"]}


EARLY_BIRD_FRACTIONS = "[0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9]"
ARMS: dict[str, Callable[[str, list[str], Path], list[dict]]] = {"iterative": imp, "oneshot": imp, "earlybird": imp}


def cost(rows: list[dict], dense: dict, headline: str) -> dict:
    """Cost of one arm's rows in units of the full dense training `dense`, and what it reached."""
    final = rows[-1]
    return {"levels": len(rows) - 1, "steps": sum(r["steps"] for r in rows) / dense["steps"],
            "seconds": sum(r["seconds"] for r in rows) / dense["seconds"],
            "sparsity": final["sparsity_scope"], "metric": final[headline], "dense_metric": dense[headline]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/digits_lenet.yaml")
    ap.add_argument("--levels", type=int, default=5, help="iterative levels k at rate 0.2")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (both arms)")
    ap.add_argument("--out", help="keep the run dirs here (default: a temporary directory)")
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads; 0: torch's default")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(describe(), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.out or tmp)
        runs = {name: ARMS[name](args.config, args.set + extra, root / name)
                for name, extra in arm_overrides(args.levels).items()}
    dense = runs["iterative"][0]  # a full dense training (an early-bird level 0 may stop early)
    headline = task_class(load_config(args.config, args.set).task).headline
    results = {name: cost(rows, dense, headline) for name, rows in runs.items()}
    print(describe())
    print(f"workload: {args.config}{''.join(' --set ' + o for o in args.set)}; cost = all trainings (dense level 0 and the "
          f"final ticket included) / one dense training")
    for name, c in results.items():
        print(f"{name:10s}: {c['levels']} pruning level(s), scope sparsity {c['sparsity']:.3f}, "
              f"{headline} {c['metric']:.4f} (dense {c['dense_metric']:.4f}), "
              f"cost {c['steps']:.2f} dense trainings in steps, {c['seconds']:.2f} in seconds")
    it, one, early = results["iterative"], results["oneshot"], results["earlybird"]
    print(f"ratio: iterative / one-shot / early-bird cost = {it['steps']:.2f} / {one['steps']:.2f} / "
          f"{early['steps']:.2f} dense trainings in steps; {headline} {it['metric']:.4f} / {one['metric']:.4f} / "
          f"{early['metric']:.4f}")


if __name__ == "__main__":
    main()
