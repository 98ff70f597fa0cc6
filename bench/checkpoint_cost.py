"""Benchmark: what one training checkpoint of Mask R-CNN R50-FPN costs (time and bytes), against
one training step, so that `train.checkpoint_every` of the paper-scale configs follows a measurement.

A checkpoint is what the loop writes (`ticketlab.train.save_checkpoint`): model, SGD momentum
buffers, RNG states and the JSON progress, as one safetensors file with its sha256, written
atomically (temporary file, fsync, rename) into --dir, which should sit on the filesystem the runs
use. One SGD step of torchvision's `maskrcnn_resnet50_fpn` (91 classes, --batch images of --size²
pixels, 4 boxes with masks each) is timed in the same process, rounds interleaved. The last line
gives the ratio, and the `checkpoint_every` (in steps) at which checkpoints cost 1% of training
time for this step time and, with --step-s, for a step time measured elsewhere (a GPU node).

    .venv/bin/python bench/checkpoint_cost.py [--rounds 5] [--size 512] [--batch 2] [--dir runs] [--step-s 0.25]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torchvision

from machine import describe
from ticketlab.train import load_checkpoint, save_checkpoint


def batch(size: int, n: int, g: torch.Generator) -> tuple[list, list]:
    images = [torch.rand(3, size, size, generator=g) for _ in range(n)]
    targets = []
    for _ in range(n):
        xy = torch.rand(4, 2, generator=g) * size * 0.6
        wh = 16 + torch.rand(4, 2, generator=g) * size * 0.3
        boxes = torch.cat([xy, xy + wh], 1)
        masks = torch.zeros(4, size, size, dtype=torch.uint8)
        for i, (x0, y0, x1, y1) in enumerate(boxes.round().long().tolist()):
            masks[i, y0:y1, x0:x1] = 1
        targets.append({"boxes": boxes, "labels": torch.randint(1, 91, (4,), generator=g), "masks": masks})
    return images, targets


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--size", type=int, default=512, help="image side for the timed step")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--dir", default=None, help="where checkpoints are written (default: a temporary directory)")
    ap.add_argument("--step-s", type=float, default=None, help="a step time measured elsewhere, in seconds")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(describe(args.threads))

    torch.manual_seed(0)
    model = torchvision.models.detection.maskrcnn_resnet50_fpn(weights=None, weights_backbone=None,
                                                               min_size=args.size, max_size=args.size)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9, weight_decay=1e-4)
    images, targets = batch(args.size, args.batch, torch.Generator().manual_seed(0))

    def step() -> None:
        loss = sum(model(images, targets).values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()  # warm-up, and the momentum buffers exist from here on, as in any checkpoint after step 1
    params = sum(p.numel() for p in model.parameters())
    extra = {"history": [{"step": s, "loss": 1.0} for s in range(50)], "sums": {}, "count": 0, "seconds": 0.0,
             "lr": 0.02, "scaler": {}, "fingerprint": {}}
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = Path(tmp) / "checkpoint.safetensors"
        steps, saves, loads = [], [], []
        for r in range(args.rounds):
            t = time.perf_counter()
            step()
            steps.append(time.perf_counter() - t)
            t = time.perf_counter()
            save_checkpoint(path, model=model, optimizer=optimizer, step=r + 2, extra=extra)
            saves.append(time.perf_counter() - t)
            t = time.perf_counter()
            load_checkpoint(path, model, optimizer)
            loads.append(time.perf_counter() - t)
        size = os.path.getsize(path)
    step_s, save_s, load_s = (statistics.median(x) for x in (steps, saves, loads))
    print(f"Mask R-CNN R50-FPN: {params / 1e6:.1f}M parameters; checkpoint {size / 2**20:.1f} MiB "
          f"({size / (4 * params):.2f}× the fp32 weights: weights + momentum + RNG + JSON)")
    print(f"median of {args.rounds}: save {save_s:.2f} s (write + fsync + rename into {args.dir or 'a temp dir'}), "
          f"load {load_s:.2f} s, one step ({args.batch}×{args.size}² on this machine) {step_s:.2f} s")
    for label, s in [("this machine's step", step_s)] + ([("--step-s", args.step_s)] if args.step_s else []):
        print(f"for 1% overhead with {label} of {s:.3g} s: checkpoint_every ≥ {100 * save_s / s:.0f} steps")
    print(f"ratio: one checkpoint costs {save_s / step_s:.2f} steps of this machine")


if __name__ == "__main__":
    main()
