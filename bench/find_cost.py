"""Benchmark: end-to-end cost of finding a ticket, in units of one dense training.

Arms, all from the same config and seed (so their level 0, the dense training, is the same run):
  iterative  IMP at rate 0.2 for --levels levels (sparsity 1 - 0.8^k);
  oneshot    one pruning level straight to the same sparsity (rate 1 - 0.8^k).
Early-bird tickets (masks drawn from an early dense checkpoint, issue 5) are a third arm to add:
an entry in `arm_overrides` (its --set list) and in ARMS (a function (config, overrides, out dir) →
summary rows like `imp` below: level 0 first, the final ticket last, each row with `steps` and
`seconds`; an early-bird level 0 that stops early simply reports fewer steps, and costs less
than 1.0 dense training).

Each arm runs `ticketlab.lottery.run_imp` in its own run dir. Its cost counts every training it
needs, the dense level 0 and the final ticket's training included: total `steps` (and `seconds`,
which include evaluation) divided by those of one full dense training (the iterative arm's level 0). The metric is the task's headline (accuracy /
bbox_AP) of the final level, next to the dense one. Defaults: configs/digits_lenet.yaml (about a
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

RATE = 0.2


def imp(config: str, overrides: list[str], out: Path) -> list[dict]:
    return run_imp(load_config(config, overrides), out, log=lambda line: print(f"  {out.name}: {line}", flush=True))


def arm_overrides(levels: int) -> dict[str, list[str]]:
    """--set lists that make each arm out of the base config."""
    return {"iterative": [f"prune.rate={RATE}", f"prune.levels={levels}"],
            "oneshot": [f"prune.rate={1 - (1 - RATE) ** levels}", "prune.levels=1"]}


ARMS: dict[str, Callable[[str, list[str], Path], list[dict]]] = {"iterative": imp, "oneshot": imp}


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
    headline = next(k for k in ("accuracy", "bbox_AP", "segm_AP", "keypoints_AP") if k in dense)
    results = {name: cost(rows, dense, headline) for name, rows in runs.items()}
    print(describe())
    print(f"workload: {args.config}{''.join(' --set ' + o for o in args.set)}; cost = all trainings (dense level 0 and the "
          f"final ticket included) / one dense training")
    for name, c in results.items():
        print(f"{name:10s}: {c['levels']} pruning level(s), scope sparsity {c['sparsity']:.3f}, "
              f"{headline} {c['metric']:.4f} (dense {c['dense_metric']:.4f}), "
              f"cost {c['steps']:.2f} dense trainings in steps, {c['seconds']:.2f} in seconds")
    it, one = results["iterative"], results["oneshot"]
    print(f"ratio: iterative / one-shot cost = {it['steps'] / one['steps']:.2f}x in steps, "
          f"{it['seconds'] / one['seconds']:.2f}x in seconds; {headline} {it['metric']:.4f} vs {one['metric']:.4f}")


if __name__ == "__main__":
    main()
