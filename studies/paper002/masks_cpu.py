"""Paper 002 Figs. 6, 7 and 8 at CPU scale: masks of three pre-trainings compared, and their controls.

Paper 002 §5 takes θ_p from supervised ImageNet, SimCLR and MoCo v2 pre-training, runs IMP on each
pre-training task restarting every level from θ_p (Algorithm 1), and compares the masks m_Img, m_sim,
m_MoCo: their relative similarity and completely pruned kernels against sparsity (Fig. 6), every
kernel of B1–B4 at one level (Fig. 7); §5.2 trains each IMP mask against its complement m^c, a random
mask m_r and m + Δm_10% (Fig. 8). This script does the same on the synthetic object crops with a
quarter-width ResNet-18 (the backbone of scripts/paper002_cpu.py), through the real CLI, so every
stage is an ordinary resumable run dir; rerun the command to resume.

    python studies/paper002/masks_cpu.py --out runs/paper002_masks              # CPU scale
    python studies/paper002/masks_cpu.py --out /tmp/m --quick                   # smoke run, ~1 minute

OUT/data/crops                     the pre-training images (ticketlab data synth-crops)
OUT/pretrain/{supervised,simclr,moco}  dense pre-training: level_00/final.safetensors is θ_p
OUT/imp/{supervised,simclr,moco}   IMP on the pre-training task from θ_p (prune.rewind=pretrained)
                                   supervised: level_NN/branch_{complement,random_mask,perturb_0.1}
OUT/report/index.html              ticketlab report of the three IMP runs: Figs. 6, 7, 8
OUT/timing.json                    seconds per stage

Differences from the paper, all for CPU time: ResNet-18 at width 0.25 on 32-px synthetic crops (not
ResNet-50 on ImageNet), θ_p pre-trained here for a few epochs (not the released checkpoints; IMP on
SimCLR/MoCo trains 3 epochs per level), 50% of the
remaining weights pruned per level over 3 levels (the paper: 20% per level up to 98.2%), one seed,
controls on the supervised run only (the paper's Fig. 8 runs them on CIFAR-100 IMP from θ_0, θ_5%, θ_Img).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ticketlab.cli import main as ticketlab

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs"
PRETRAIN = {
    "supervised": (CONFIGS / "paper002_cpu_supervised.yaml", []),
    "simclr": (CONFIGS / "paper002_cpu_simclr.yaml", ["train.seed=1"]),
    "moco": (CONFIGS / "paper002_cpu_simclr.yaml", ["task=moco", "ssl.moco_queue=256", "ssl.temperature=0.2",
                                                    "train.duration=5ep", "train.eval_every=5ep", "train.seed=2"]),
}
# Each pre-training starts from its own random init (seeds 0, 1, 2), as independent pre-trainings do: with
# one shared init the masks keep much of that init's magnitude order (72-91% similar over 3 levels here).
# IMP from θ_p on the self-supervised tasks: 3 epochs per level (paper 002 Table 1: 10 epochs from the
# released θ_p; the pre-training configs' 10 epochs per level would take 15 minutes per task here).
SSL_IMP = ["train.duration=3ep", "train.eval_every=3ep", "train.checkpoint_every=3ep"]
CROPS = ["data", "synth-crops", "--seed", "0", "--n-train", "320", "--n-val", "80"]
QUICK_CROPS = ["--n-train", "40", "--n-val", "8", "--imbalance", "1.0"]
QUICK_TRAIN = ["train.duration=2it", "train.eval_every=2it", "train.checkpoint_every=2it", "train.warmup=0it",
               "train.batch_size=8", "ssl.knn_k=2"]
IMP = ["prune.rate=0.5", "prune.levels=3", "prune.rewind=pretrained"]


def run(argv: list[str]) -> None:
    print("$ ticketlab " + " ".join(argv), flush=True)
    code = ticketlab(argv)
    if code:
        raise SystemExit(code)


def find(config: Path, out: Path, overrides: list[str]) -> Path:
    run(["find", str(config), "--out", str(out), *[a for o in overrides for a in ("--set", o)]])
    return out


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="directory of everything this study writes")
    parser.add_argument("--quick", action="store_true", help="tiny data, 2 steps per level: a smoke test")
    args = parser.parse_args(argv)
    out = Path(args.out)
    train = QUICK_TRAIN if args.quick else []
    seconds: dict[str, float] = {}

    def stage(name: str, start: float) -> None:
        seconds[name] = round(time.perf_counter() - start, 1)
        print(f"[paper002 masks] {name}: {seconds[name]} s", flush=True)

    start = time.perf_counter()
    crops = out / "data" / "crops"
    if not (crops / "crops.json").is_file():
        run([*CROPS, *(QUICK_CROPS if args.quick else []), "--out", str(crops)])
    stage("data", start)
    imp = {}
    for name, (config, extra) in PRETRAIN.items():
        start = time.perf_counter()
        common = [f"data.root={crops}", *extra, *train]
        theta = find(config, out / "pretrain" / name, [*common, "prune.levels=0"]) / "level_00" / "final.safetensors"
        per_level = SSL_IMP if name != "supervised" and not args.quick else []
        imp[name] = find(config, out / "imp" / name, [*common, f"model.weights={theta}", *IMP, *per_level])
        stage(f"{name}: θ_p and IMP", start)
    start = time.perf_counter()
    run(["controls", str(imp["supervised"])])
    stage("controls of the supervised IMP run", start)
    start = time.perf_counter()
    run(["report", *map(str, imp.values()), "--out", str(out / "report"), "--level", "2"])
    stage("report", start)
    (out / "timing.json").write_text(json.dumps(seconds, indent=1) + "\n")
    return out / "report" / "index.html"


if __name__ == "__main__":
    main()
