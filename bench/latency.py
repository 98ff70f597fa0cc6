"""Benchmark: inference latency of a dense model vs its ticket, in PyTorch (CPU) and ONNX Runtime,
plus the R-CNN box head with dense vs CSR weights.

A ticket is the same torchvision ResNet-18 pruned by global magnitude to --sparsity (random init):
  dense / ticket            the same dense kernels; the ticket's weights are just mostly 0;
  compact                   `ticketlab.deploy.compact`: hidden channels that provably cannot change the
                            outputs removed (few, for unstructured pruning of a random init);
each run eagerly in PyTorch and as ONNX (torch.onnx.export, dynamo=False) in ONNX Runtime's CPU
provider. The box head is torchvision's TwoMLPHead at the lite config's size (150 RoIs, 64·7·7 →
256) and the paper's (1000 RoIs, 256·7·7 → 1024), fc6 and fc7 pruned together by global magnitude
to --sparsity (fc6, smaller at init, ends up sparser than fc7; both are printed), dense
`F.linear` vs `ticketlab.deploy.sparse_linear.CsrLinear`. Calls are interleaved in rotating
order and the median of --repeats is reported; outputs are checked equal before timing.

Channel tickets (--runs RUN_DIR ...: finished `prune.granularity: channel` runs, the seeds of one config;
classifier runs and detector runs may be mixed): every finished level of every run deployed as `ticketlab
export --compact` does (`ticketlab.deploy.latency.deployed_model`), beside its own level 0 uncompacted
(dense). A classifier runs whole; a detector's backbone (ResNet body + FPN) runs alone on a
3×S×S tensor, since the heads' cost depends on the proposals. Each input size in --sizes (0 = the
run's own validation image) is one interleaved loop over every model of every run in both runtimes.
Per level: channels removed (coupled units, from the mask), the headline metric from its
metrics.json (mean ± std over seeds; "matching" = ≥ dense mean − 1 std), MACs counted over the weights
that remain (`ticketlab.deploy.flops`), and the median latencies and the speedup over the same seed's
dense model, averaged over seeds.

    .venv/bin/python bench/latency.py [--sparsity 0.9] [--repeats 30] [--threads 1] [--size 224]
    .venv/bin/python bench/latency.py --runs RUNS/seed0 RUNS/seed1 RUNS/seed2 --sizes 0 224 --threads 2
"""

from __future__ import annotations

import argparse
import copy
import statistics
import warnings
from pathlib import Path

import torch
import torchvision
from torchvision.models.detection.faster_rcnn import TwoMLPHead

from machine import describe
from ticketlab.analysis.runs import group_series, load_runs
from ticketlab.deploy import compact, flat_outputs
from ticketlab.deploy.flops import count_macs
from ticketlab.deploy.latency import deployed_model, interleaved_medians, onnx_runner
from ticketlab.deploy.sparse_linear import csr_box_head
from ticketlab.rundir import level_name
from ticketlab.sparsity import full_mask, prunable_parameter_names, prune_global


def prune_(model: torch.nn.Module, sparsity: float) -> None:
    params = dict(model.named_parameters())
    weights = {n: params[n].detach() for n in prunable_parameter_names(model)}
    mask = prune_global(weights, full_mask(weights), sparsity)
    with torch.no_grad():
        for n, m in mask.items():
            params[n].mul_(m)


def channel_rows(run_dirs: list[Path], sizes: list[int], repeats: int, threads: int) -> None:
    """The channel-ticket table (module docstring), one per input size, printed."""
    runs = load_runs(run_dirs)
    models = {}  # (run, level) → (deployed model, dense level-0 model, example builder, facts)
    for run in runs:
        dense = deployed_model(run.path / level_name(0))
        dense_model = copy.deepcopy(dense.ticket.model).cpu().eval()
        for level in sorted(run.levels):
            d = dense if level == 0 else deployed_model(run.path / level_name(level))
            backbone = getattr(d.model, "backbone", None)
            part = (lambda m: m.backbone) if backbone is not None else (lambda m: m)
            models[run.path, level] = (part(d.model), part(dense_model), part(d.ticket.model.cpu().eval()), d)
    for size in sizes:
        runners, facts = {}, {}
        for (path, level), (small, full, masked, d) in models.items():
            own = d.example[0].unsqueeze(0) if isinstance(d.example, list) else d.example
            x = own if size == 0 else torch.randn(1, own.shape[1], size, size)
            with torch.no_grad():
                for a, b in zip(flat_outputs(masked(x)), flat_outputs(small(x))):  # compacted = the masked ticket
                    torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)
            runners[path, level, "torch"] = lambda m=small, x=x: m(x)
            runners[path, level, "ort"] = onnx_runner(small, x, threads)
            if level == 0:
                runners[path, 0, "torch dense"] = lambda m=full, x=x: m(x)
                runners[path, 0, "ort dense"] = onnx_runner(full, x, threads)
            facts[path, level] = (count_macs(small, x).remaining, count_macs(full, x).dense,
                                  sum(p.numel() for p in small.parameters()), tuple(x.shape))
        med = interleaved_medians(runners, repeats)
        shown = "each run's own image" if size == 0 else f"{size}x{size}"
        print(f"\nchannel tickets, input {shown}; "
              f"median of {repeats} interleaved calls; speedup = the same seed's dense / compacted, mean over seeds")
        header = ("run config", "level", "channels removed", "metric", "mean ± std", "matching", "MACs kept",
                  "params", "torch dense ms", "torch compact ms", "torch speedup", "ORT dense ms",
                  "ORT compact ms", "ORT speedup")
        print(" | ".join(header))
        for series in group_by_config(runs):
            headline = series[0].headline
            dense_values = [r.levels[0][headline] for r in series]
            for level in sorted(set.intersection(*(set(r.levels) for r in series))):
                values = [r.levels[level][headline] for r in series]
                removed = [1 - k / t if t else 0.0 for k, t in (models[r.path, level][3].channels for r in series)]
                row = [series[0].config["model.family"], level, f"{100 * statistics.mean(removed):.1f}%", headline,
                       f"{statistics.mean(values):.4f} ± {stdev(values):.4f}",
                       "—" if level == 0 else ("yes" if statistics.mean(values) >= statistics.mean(dense_values)
                                                - stdev(dense_values) else "no"),
                       f"{statistics.mean(facts[r.path, level][0] / facts[r.path, level][1] for r in series):.3f}",
                       int(statistics.mean(facts[r.path, level][2] for r in series))]
                for rt in ("torch", "ort"):
                    dense_ms = [1e3 * med[r.path, 0, f"{rt} dense"] for r in series]
                    small_ms = [1e3 * med[r.path, level, rt] for r in series]
                    row += [f"{statistics.mean(dense_ms):.2f}", f"{statistics.mean(small_ms):.2f}",
                            f"{statistics.mean(a / b for a, b in zip(dense_ms, small_ms)):.2f}x"]
                print(" | ".join(map(str, row)))


def group_by_config(runs) -> list[list]:
    """Runs of one config (seed aside), in order of appearance."""
    return [list(s.runs) for s in group_series(runs)]


def stdev(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sparsity", type=float, default=0.9)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--runs", nargs="+", type=Path, help="channel-ticket run dirs: print their table and stop")
    ap.add_argument("--sizes", nargs="+", type=int, default=[0, 224], help="--runs: input sizes (0 = the run's own)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")  # sparse CSR "beta" notice
    if args.runs:
        print(describe(args.threads))
        channel_rows(args.runs, args.sizes, args.repeats, args.threads)
        return

    torch.manual_seed(0)
    dense = torchvision.models.resnet18().eval()
    ticket = copy.deepcopy(dense)
    prune_(ticket, args.sparsity)
    small = copy.deepcopy(ticket)
    report = compact(small)
    x = torch.randn(1, 3, args.size, args.size)
    with torch.no_grad():
        torch.testing.assert_close(small(x), ticket(x), rtol=1e-4, atol=1e-4)
    runners = {"torch dense": lambda: dense(x), "torch ticket": lambda: ticket(x), "torch compact": lambda: small(x),
               "ort dense": onnx_runner(dense, x, args.threads), "ort ticket": onnx_runner(ticket, x, args.threads),
               "ort compact": onnx_runner(small, x, args.threads)}
    with torch.no_grad():
        torch.testing.assert_close(runners["ort compact"]()[0], ticket(x), rtol=1e-4, atol=1e-4)
    med = interleaved_medians(runners, args.repeats)

    heads = {}
    for label, rois, channels, rep in (("lite", 150, 64, 256), ("paper", 1000, 256, 1024)):
        head = TwoMLPHead(channels * 49, rep).eval()
        prune_(head, args.sparsity)
        csr = copy.deepcopy(head)
        csr_box_head(csr)
        feats = torch.randn(rois, channels, 7, 7)
        with torch.no_grad():
            torch.testing.assert_close(csr(feats), head(feats), rtol=1e-4, atol=1e-4)
        layer_sparsity = [float((fc.weight == 0).float().mean()) for fc in (head.fc6, head.fc7)]
        heads[label] = interleaved_medians({"dense": lambda h=head, f=feats: h(f), "csr": lambda h=csr, f=feats: h(f)},
                             max(5, args.repeats // 3)) | {"sparsity": layer_sparsity}

    print(describe(args.threads))
    print(f"workload: resnet18 batch 1x3x{args.size}x{args.size}, global magnitude sparsity {args.sparsity} "
          f"(random init); compaction removed {report.channels_removed} channels, params "
          f"{report.params_before} -> {report.params_after}; median of {args.repeats} interleaved calls each")
    for k, v in med.items():
        print(f"{k:14s}: {v * 1e3:8.2f} ms")
    for label, m in heads.items():
        print(f"box head {label:5s} (fc6 {m['sparsity'][0]:.3f}, fc7 {m['sparsity'][1]:.3f} sparse): "
              f"dense {m['dense'] * 1e3:.2f} ms, CSR {m['csr'] * 1e3:.2f} ms")
    print(f"speedup vs dense (>1 = faster): torch ticket {med['torch dense'] / med['torch ticket']:.2f}x, "
          f"torch compact {med['torch dense'] / med['torch compact']:.2f}x, "
          f"ORT ticket {med['ort dense'] / med['ort ticket']:.2f}x, ORT compact {med['ort dense'] / med['ort compact']:.2f}x, "
          f"ORT dense vs torch dense {med['torch dense'] / med['ort dense']:.2f}x, "
          + ", ".join(f"CSR box head {k} {m['dense'] / m['csr']:.2f}x" for k, m in heads.items()))


if __name__ == "__main__":
    main()
