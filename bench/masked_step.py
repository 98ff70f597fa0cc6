"""Benchmark: cost of keeping a model sparse during training, relative to dense training.

For each model in --models (ResNet-50 classification, Faster R-CNN R50-FPN and R18-FPN by
default; small images so that it runs on a CPU), four copies train on one fixed batch with SGD
(lr 0.01, momentum 0.9, weight decay 5e-4) under the same global-magnitude mask (--sparsity of the
conv/linear weights): dense, ticketlab's MaskEnforcer, torch.nn.utils.prune and an open_lth-style
in-place re-mask before every forward (see bench/maskers.py). Goal: masked ≤ 1.02× dense.

Method: --rounds rounds, each running one step of every arm in rotating order, every arm re-seeded
identically before its step (so Faster R-CNN samples the same anchors and proposals); each step is
timed with time.perf_counter (--clock cpu: time.process_time, the CPU time this process used,
which other processes competing for the cores do not inflate). Adjacent steps of different arms see the same machine state, so the
figure reported is the median over rounds of (arm step time / dense step time in the same round),
after --warmup untimed rounds. Median step times are printed too.

    .venv/bin/python bench/masked_step.py [--models resnet50,fasterrcnn_r50,fasterrcnn_r18]
        [--rounds 15] [--warmup 2] [--image-size N] [--batch N] [--sparsity 0.8] [--threads N] [--clock wall|cpu]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from machine import describe
from maskers import ARMS, MODELS, Arm, magnitude_mask, workload

MASKED = ARMS[1:]


def run_model(name: str, args: argparse.Namespace, device: torch.device) -> dict[str, tuple[float, float]]:
    """arm → (median step seconds, median ratio to dense in the same round)."""
    size = args.image_size or (64 if name.startswith("resnet") else 128)
    batch = args.batch or (8 if name.startswith("resnet") else 2)
    work = workload(name, size, batch, device)
    torch.manual_seed(0)
    mask = magnitude_mask(work.build(), args.sparsity)
    arms = {k: Arm(k, work, mask) for k in ARMS}
    times: dict[str, list[float]] = {k: [] for k in ARMS}
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    for r in range(args.warmup + args.rounds):
        order = ARMS[r % len(ARMS):] + ARMS[: r % len(ARMS)]
        for k in order:
            torch.manual_seed(r)
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = clock()
            arms[k].step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            if r >= args.warmup:
                times[k].append(clock() - t0)
    enf = arms["ticketlab"]
    assert all(bool((w[~mask[n]] == 0).all()) for n, w in enf.effective_weights().items())
    kept = sum(int(m.sum()) for m in mask.values()) / sum(m.numel() for m in mask.values())
    print(f"workload: {work.describe}; {len(mask)} tensors, scope sparsity {1 - kept:.3f}; "
          f"{args.rounds} interleaved rounds after {args.warmup} warm-up, {args.clock} clock", flush=True)
    out = {}
    for k in ARMS:
        ratio = statistics.median(t / d for t, d in zip(times[k], times["dense"]))
        out[k] = (statistics.median(times[k]), ratio)
        print(f"  {k:10s} {out[k][0] * 1e3:8.1f} ms/step  median ratio {ratio:.3f}x", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="resnet50,fasterrcnn_r50,fasterrcnn_r18",
                    help=f"comma-separated, from {', '.join(MODELS)}")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--image-size", type=int, default=0, help="0: 64 for ResNets, 128 for Faster R-CNN")
    ap.add_argument("--batch", type=int, default=0, help="0: 8 images for ResNets, 2 for Faster R-CNN")
    ap.add_argument("--sparsity", type=float, default=0.8)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="cpu: this process's CPU time (steadier on a shared machine; use with --threads 1)")
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads; 0: torch's default")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    bad = [m for m in models if m not in MODELS]
    if bad:
        ap.error(f"--models: unknown {', '.join(bad)}; expected some of {', '.join(MODELS)}")
    device = torch.device(args.device)
    print(describe(), flush=True)
    results = {m: run_model(m, args, device) for m in models}
    print(describe())  # load may have changed during the run
    print("median ratio vs dense (goal <= 1.02): " + "; ".join(
        f"{m}: " + ", ".join(f"{k} {results[m][k][1]:.3f}x" for k in MASKED) for m in models))


if __name__ == "__main__":
    main()
