"""Benchmark: cost of keeping a ResNet-18 80% sparse during training, relative to dense training.

Three copies of torchvision resnet18(num_classes=10) train on the same fixed CPU batch
(8×3×64×64, SGD lr 0.01, momentum 0.9, weight decay 5e-4):
  dense   plain training step;
  ours    same step + MaskEnforcer.mask_grads() after backward + after_step(opt) after the step;
  torch   torch.nn.utils.prune.global_unstructured(amount=0.8) reparametrisation (weight_orig *
          weight_mask recomputed by a forward pre-hook), plain step.
Steps are interleaved (dense, ours, torch in rotating order) so that machine noise hits all three
alike; each step is timed with time.perf_counter and the median over --steps is reported, after
--warmup untimed steps each.

    .venv/bin/python bench/masked_step.py [--steps 40] [--warmup 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torchvision
from torch import nn
from torch.nn.utils import prune as tprune

from machine import describe
from ticketlab.sparsity import MaskEnforcer, full_mask, prunable_parameter_names, prune_global

SPARSITY = 0.8


def build():
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=10)


def make_sgd(model):
    return torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=5)
    args = ap.parse_args()

    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 3, 64, 64, generator=g)
    y = torch.randint(0, 10, (8,), generator=g)

    dense = build()
    ours = build()
    names = prunable_parameter_names(ours)
    params = dict(ours.named_parameters())
    weights = {n: params[n].detach() for n in names}
    mask = prune_global(weights, full_mask(weights), SPARSITY)
    enforcer = MaskEnforcer(ours, mask)
    enforcer.zero_weights()
    ref = build()
    tprune.global_unstructured([(ref.get_submodule(n.rsplit(".", 1)[0]), "weight") for n in names],
                               pruning_method=tprune.L1Unstructured, amount=SPARSITY)

    variants = {"dense": (dense, make_sgd(dense), None), "ours": (ours, make_sgd(ours), enforcer),
                "torch": (ref, make_sgd(ref), None)}

    def step(model, opt, enf):
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
        if enf is not None:
            enf.mask_grads()
        opt.step()
        if enf is not None:
            enf.after_step(opt)

    times: dict[str, list[float]] = {k: [] for k in variants}
    order = list(variants)
    for i in range(args.warmup + args.steps):
        for k in order[i % 3:] + order[: i % 3]:
            t0 = time.perf_counter()
            step(*variants[k])
            if i >= args.warmup:
                times[k].append(time.perf_counter() - t0)
    kept = sum(int(m.sum()) for m in mask.values()) / sum(m.numel() for m in mask.values())
    assert all(bool((params[n].detach()[~mask[n]] == 0).all()) for n in names)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(describe())
    print(f"workload: resnet18 train step, batch 8x3x64x64, SGD momentum+wd, scope sparsity {1 - kept:.3f}, "
          f"median of {args.steps} interleaved steps each")
    for k in variants:
        print(f"{k:6s}: {med[k] * 1e3:.1f} ms/step")
    print(f"ratio vs dense: ours (MaskEnforcer) {med['ours'] / med['dense']:.3f}x, "
          f"torch.nn.utils.prune {med['torch'] / med['dense']:.3f}x")


if __name__ == "__main__":
    main()
