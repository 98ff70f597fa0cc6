"""Benchmark: how many bytes a ticket takes — mask file vs n/8 vs the entropy bound, and a sparse
ticket file (mask + kept values) vs the dense state_dict.

A torchvision model is pruned by global magnitude (`ticketlab.sparsity.prune_global`, rate = the
sparsity, every conv/linear weight in scope) at each --sparsity. For each it reports:
  mask     bytes of mask.safetensors as `ticketlab.sparsity.save_mask` writes it (bit-packed);
  n/8      one bit per scope weight;
  H bound  n·H(p)/8 bytes, H the binary entropy of the kept fraction p: no lossless code of a mask
           drawn with independent bits can do better on average; "H/tensor" is the same bound with
           each tensor's own kept fraction (magnitude pruning keeps very different fractions per
           layer, which a compressor can exploit); zlib level 9 of the packed bits shows how close a
           generic compressor gets;
  sparse   mask.safetensors + a safetensors file of the kept scope values (1-D float32 per tensor)
           and every tensor outside the scope as is;
  dense    the full state_dict as safetensors (what final.safetensors holds).

    .venv/bin/python bench/storage.py [--model resnet18|maskrcnn] [--sparsity 0.5 0.8 0.9 0.97]
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import zlib

import torch
import torchvision
from safetensors.torch import save as safetensors_bytes

from machine import describe
from ticketlab.sparsity import full_mask, prunable_parameter_names, prune_global, save_mask
from ticketlab.sparsity.mask_io import pack


def build(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if name == "maskrcnn":
        return torchvision.models.detection.maskrcnn_resnet50_fpn(weights=None, weights_backbone=None)
    return torchvision.models.resnet18()


def entropy_bits(p: float) -> float:
    return 0.0 if p in (0.0, 1.0) else -(p * math.log2(p) + (1 - p) * math.log2(1 - p))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=["resnet18", "maskrcnn"], default="resnet18")
    ap.add_argument("--sparsity", type=float, nargs="+", default=[0.5, 0.8, 0.9, 0.97])
    args = ap.parse_args()

    model = build(args.model)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    scope = prunable_parameter_names(model)
    weights = {n: state[n] for n in scope}
    n = sum(w.numel() for w in weights.values())
    dense = len(safetensors_bytes(state))
    print(describe())
    print(f"workload: torchvision {args.model}, {n} weights in scope of {sum(v.numel() for v in state.values())} "
          f"state_dict values, global magnitude pruning of the random init")
    print(f"{'sparsity':>8} {'mask B':>10} {'n/8 B':>10} {'H bound B':>10} {'H/tensor B':>10} {'zlib B':>10} {'sparse B':>11} "
          f"{'dense B':>11} {'mask/(n/8)':>10} {'mask/H':>7} {'sparse/dense':>12}")
    last = None
    with tempfile.TemporaryDirectory() as tmp:
        for s in args.sparsity:
            mask = prune_global(weights, full_mask(weights), s)
            kept = sum(int(m.sum()) for m in mask.values())
            path = os.path.join(tmp, "mask.safetensors")
            save_mask(path, mask)
            mask_bytes = os.path.getsize(path)
            bound = n * entropy_bits(kept / n) / 8
            per_tensor = sum(m.numel() * entropy_bits(float(m.float().mean())) for m in mask.values()) / 8
            zipped = sum(len(zlib.compress(pack(m).numpy().tobytes(), 9)) for m in mask.values())
            values = {k: (v[mask[k]] if k in mask else v) for k, v in state.items()}
            sparse = mask_bytes + len(safetensors_bytes(values))
            print(f"{1 - kept / n:8.3f} {mask_bytes:10d} {n / 8:10.0f} {bound:10.0f} {per_tensor:10.0f} {zipped:10d} {sparse:11d} "
                  f"{dense:11d} {mask_bytes / (n / 8):10.3f} {mask_bytes / bound:7.2f} {sparse / dense:12.3f}")
            last = (1 - kept / n, mask_bytes / (n / 8), mask_bytes / bound, zipped / bound, sparse / dense)
    s, over_n8, over_h, zip_h, ratio = last
    print(f"ratio at sparsity {s:.3f}: mask file {over_n8:.3f}x n/8, {over_h:.2f}x the entropy bound "
          f"(zlib {zip_h:.2f}x); sparse ticket file {ratio:.3f}x the dense state_dict")


if __name__ == "__main__":
    main()
