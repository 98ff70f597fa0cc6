"""Benchmark: one global magnitude-pruning step over Mask R-CNN's conv+linear weights.

ticketlab.sparsity.prune_global vs torch.nn.utils.prune.global_unstructured(L1Unstructured), both
starting from the same random existing mask (~50% kept) and removing 20% of what remains.

Method: every measurement runs in a fresh subprocess (interleaved ours/torch, --repeats each) that
builds torchvision maskrcnn_resnet50_fpn(weights=None, weights_backbone=None), sets up the existing
mask (for torch: prune.custom_from_mask on every module, not timed), then times the single step with
time.perf_counter. Peak memory = the highest resident set size (RSS, /proc/self/statm) seen by a
thread sampling every 0.5 ms during the step, minus the RSS just before it (Linux only; tracemalloc
cannot see torch's allocator). Medians over the repeats are reported.

    .venv/bin/python bench/prune_step.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time

from machine import describe

RATE = 0.2
PAGE = os.sysconf("SC_PAGE_SIZE")


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


class PeakRSS:
    """Samples this process's RSS in a thread; `peak` is the highest value seen."""

    def __enter__(self):
        self.start = self.peak = _rss()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss())
            time.sleep(0.0005)

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, _rss())


def one_run(which: str) -> dict:
    import torch
    import torchvision
    from torch.nn.utils import prune as tprune

    from ticketlab.sparsity import prunable_parameter_names, prune_global

    torch.manual_seed(0)
    model = torchvision.models.detection.maskrcnn_resnet50_fpn(weights=None, weights_backbone=None)
    names = prunable_parameter_names(model)
    g = torch.Generator().manual_seed(1)
    params = dict(model.named_parameters())
    mask = {n: torch.rand(params[n].shape, generator=g) < 0.5 for n in names}
    if which == "torch":
        pairs = []
        for n in names:
            mod = model.get_submodule(n.rsplit(".", 1)[0])
            tprune.custom_from_mask(mod, "weight", mask[n])
            pairs.append((mod, "weight"))
        del mask
        step = lambda: tprune.global_unstructured(pairs, pruning_method=tprune.L1Unstructured, amount=RATE)
    else:
        weights = {n: params[n].detach() for n in names}
        step = lambda: prune_global(weights, mask, RATE)
    import gc
    gc.collect()
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        out = step()
        seconds = time.perf_counter() - t0
    del out
    return {"seconds": seconds, "peak_bytes": mem.peak - mem.start,
            "weights": sum(params[n].numel() for n in names) if which == "ours" else None,
            "threads": torch.get_num_threads(), "torch": torch.__version__}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--one", choices=["ours", "torch"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one_run(args.one)))
        return
    res: dict[str, list[dict]] = {"ours": [], "torch": []}
    for r in range(args.repeats):
        for which in (["ours", "torch"] if r % 2 == 0 else ["torch", "ours"]):
            out = subprocess.run([sys.executable, __file__, "--one", which], check=True,
                                 capture_output=True, text=True).stdout
            res[which].append(json.loads(out.strip().splitlines()[-1]))
            d = res[which][-1]
            print(f"  run {r} {which:5s}: {d['seconds']:.3f} s, peak +{d['peak_bytes'] / 2**20:.0f} MiB", flush=True)
    med = {w: (statistics.median(d["seconds"] for d in v), statistics.median(d["peak_bytes"] for d in v))
           for w, v in res.items()}
    d0 = res["ours"][0]
    print(describe(d0['threads']))
    print(f"workload: one global step, rate {RATE}, {d0['weights'] / 1e6:.1f}M conv+linear weights of "
          f"maskrcnn_resnet50_fpn, existing mask ~50% kept; medians of {args.repeats} fresh processes each")
    for w in ("ours", "torch"):
        print(f"{w:6s}: {med[w][0]:.3f} s   peak RSS +{med[w][1] / 2**20:.0f} MiB")
    print(f"ratio: global_unstructured / ticketlab time = {med['torch'][0] / med['ours'][0]:.1f}x faster, "
          f"ticketlab / global_unstructured peak memory = {med['ours'][1] / med['torch'][1]:.2f}")


if __name__ == "__main__":
    main()
