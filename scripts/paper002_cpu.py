"""Paper 002's flow at CPU scale, end to end: pre-train, find m_P, transfer, find m_T, tabulate.

Paper 002 prunes pre-trained backbones θ_p (ImageNet-supervised, SimCLR) by IMP on the pre-training task
(masks m_P, every level restarting from θ_p), fine-tunes m_P ⊙ θ_p on downstream classification and
detection, and compares it with the dense θ_p and with masks m_T found by IMP on each downstream task
from θ_p. This script runs that flow on data it writes itself (synthetic scenes), through the real CLI
(`ticketlab data synth`, `data synth-crops`, `find`, `transfer-matrix`), so every stage is an ordinary,
resumable run dir; rerun the same command to resume. See docs/paper002_flow.md.

    python scripts/paper002_cpu.py --out runs/paper002_cpu             # 3 seeds, ~25 min on 2 cores
    python scripts/paper002_cpu.py --out /tmp/p002 --quick --seeds 0   # smoke run, about a minute

OUT/data/{crops,classify,detect}   pre-training crops; target (a) crops; target (b) COCO scenes
OUT/pretrain/{supervised,simclr}   dense pre-training: level_00/final.safetensors is θ_p
OUT/imp/{supervised,simclr}        IMP on the pre-training task from θ_p: the last level's mask is m_P
OUT/imp/{classify,detect}          IMP on each target from θ_sup: the last level's mask is m_T
OUT/imp_theta0/{classify,detect}   (--theta0) IMP on each target from a random init θ0
OUT/spec.yaml, OUT/matrix/         the transfer-matrix spec and its cells, matrix.{md,csv,png}
OUT/timing.json                    seconds per stage
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import yaml

from ticketlab.cli import main as ticketlab

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
PRETRAIN = {"supervised": CONFIGS / "paper002_cpu_supervised.yaml", "simclr": CONFIGS / "paper002_cpu_simclr.yaml"}
TARGETS = {"classify": CONFIGS / "paper002_cpu_classify.yaml", "detect": CONFIGS / "paper002_cpu_detect.yaml"}
METRICS = {"classify": "accuracy", "detect": "bbox_AP50"}

# Pre-training scenes (seed 0), target (a): the five polygon classes, balanced, more context, few images of
# another seed; target (b): detection on scenes of a third seed.
DATA = {
    "crops": ["data", "synth-crops", "--seed", "0", "--n-train", "320", "--n-val", "80"],
    "classify": ["data", "synth-crops", "--seed", "2", "--n-train", "40", "--n-val", "80", "--pad", "0.4",
                 "--classes", "[square, triangle, hexagon, star, cross]", "--imbalance", "1.0",
                 "--keypoints", "false"],
    "detect": ["data", "synth", "--seed", "1", "--n-train", "160", "--n-val", "40", "--image-size", "96"],
}
QUICK_DATA = {"crops": ["--n-train", "40", "--n-val", "8", "--imbalance", "1.0"],
              "classify": ["--n-train", "10", "--n-val", "6"],
              "detect": ["--n-train", "8", "--n-val", "4", "--image-size", "64"]}
QUICK_TRAIN = ["train.duration=2it", "train.eval_every=2it", "train.checkpoint_every=2it", "train.warmup=0it",
               "train.milestones=[]", "train.batch_size=8", "prune.levels=1"]
DATA_DONE = {"crops": "crops.json", "classify": "crops.json", "detect": "val.json"}


def run(argv: list[str]) -> None:
    """One ticketlab command in this process; a failure stops the script with its exit code."""
    print("$ ticketlab " + " ".join(argv), flush=True)
    code = ticketlab(argv)
    if code:
        raise SystemExit(code)


def find(config: Path, out: Path, overrides: list[str]) -> Path:
    """Run (or resume) IMP; returns the run dir."""
    run(["find", str(config), "--out", str(out), *[a for o in overrides for a in ("--set", o)]])
    return out


def last_level(run_dir: Path) -> Path:
    return sorted(run_dir.glob("level_[0-9][0-9]"))[-1]


def matrix_spec(out: Path, seeds: list[int], theta: dict[str, Path], masks: dict[str, Path], train: list[str],
                theta0: bool) -> dict:
    """Columns: the two targets from θ_sup, no further pruning. Rows: where the backbone mask comes from."""
    targets = {name: {"config": str(cfg), "metric": METRICS[name],
                      "set": [f"data.root={out / 'data' / name}", f"model.weights={theta['supervised']}",
                              *train, "prune.levels=0"]}
               for name, cfg in TARGETS.items()}
    sources = {
        "m_P supervised": [f"init.source={masks['supervised']}", "init.mode=mask"],
        "m_P SimCLR": [f"model.weights={theta['simclr']}", f"init.source={masks['simclr']}", "init.mode=mask"],
        "m_T": [f"init.source={masks['target']}", "init.mode=mask"],
        "dense SimCLR": [f"model.weights={theta['simclr']}"],
    }
    if theta0:  # (m_T, θ0): the ticket found from a random init, restarting from that very init
        sources["m_T theta0"] = ["model.weights=null", f"init.source={masks['theta0']}", "init.mode=ticket",
                             "init.values=rewind"]
    return {"seeds": seeds, "targets": targets, "sources": sources}


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="directory of everything this flow writes")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="fine-tuning seeds of each cell")
    parser.add_argument("--quick", action="store_true", help="tiny data, 2 steps per level, 1 level: a smoke test")
    parser.add_argument("--theta0", action="store_true", help="add the row (m_T, θ0): IMP on each target from a "
                        "random init (paper 002's LTH baseline)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    train = QUICK_TRAIN if args.quick else []
    seconds: dict[str, float] = {}

    def stage(name: str, start: float) -> None:
        seconds[name] = round(time.perf_counter() - start, 1)
        print(f"[paper002] {name}: {seconds[name]} s", flush=True)

    start = time.perf_counter()
    for name, argv_ in DATA.items():
        if not (out / "data" / name / DATA_DONE[name]).is_file():
            run([*argv_, *(QUICK_DATA[name] if args.quick else []), "--out", str(out / "data" / name)])
    stage("data", start)

    theta, masks = {}, {}
    for name, cfg in PRETRAIN.items():  # θ_p, then IMP on the pre-training task restarting from θ_p
        start = time.perf_counter()
        data = [f"data.root={out / 'data' / 'crops'}", *train]
        dense = find(cfg, out / "pretrain" / name, [*data, "prune.levels=0"])
        theta[name] = dense / "level_00" / "final.safetensors"
        masks[name] = last_level(find(cfg, out / "imp" / name,
                                      [*data, f"model.weights={theta[name]}", "prune.rewind=pretrained"]))
        stage(f"pretrain {name}", start)

    for name, cfg in TARGETS.items():  # m_T: IMP on each target from θ_sup (and from θ0 with --theta0)
        start = time.perf_counter()
        data = [f"data.root={out / 'data' / name}", *train]
        find(cfg, out / "imp" / name, [*data, f"model.weights={theta['supervised']}"])
        if args.theta0:
            find(cfg, out / "imp_theta0" / name, [*data, "prune.rewind=init"])
        stage(f"m_T {name}", start)
    level = last_level(out / "imp" / "classify").name
    masks["target"] = out / "imp" / "{target}" / level
    masks["theta0"] = out / "imp_theta0" / "{target}" / level

    start = time.perf_counter()
    spec = out / "spec.yaml"
    spec.write_text(yaml.safe_dump(matrix_spec(out, args.seeds, theta, masks, train, args.theta0),
                                   allow_unicode=True, sort_keys=False))
    run(["transfer-matrix", str(spec), "--out", str(out / "matrix")])
    stage("transfer matrix", start)

    seconds["total"] = round(sum(seconds.values()), 1)
    (out / "timing.json").write_text(json.dumps(seconds, indent=1) + "\n")
    table = out / "matrix" / "matrix.md"
    print(f"\n{table}:\n\n{table.read_text()}\ntiming (s): {seconds}")
    return table


if __name__ == "__main__":
    main()
