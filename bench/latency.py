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

    .venv/bin/python bench/latency.py [--sparsity 0.9] [--repeats 30] [--threads 1] [--size 224]
"""

from __future__ import annotations

import argparse
import copy
import io
import statistics
import time
import warnings

import onnxruntime
import torch
import torchvision
from torchvision.models.detection.faster_rcnn import TwoMLPHead

from machine import describe
from ticketlab.deploy import compact
from ticketlab.deploy.sparse_linear import csr_box_head
from ticketlab.sparsity import full_mask, prunable_parameter_names, prune_global


def prune_(model: torch.nn.Module, sparsity: float) -> None:
    params = dict(model.named_parameters())
    weights = {n: params[n].detach() for n in prunable_parameter_names(model)}
    mask = prune_global(weights, full_mask(weights), sparsity)
    with torch.no_grad():
        for n, m in mask.items():
            params[n].mul_(m)


def onnx_runner(model: torch.nn.Module, x: torch.Tensor, threads: int):
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), buf, dynamo=False, opset_version=17, input_names=["x"])
    opts = onnxruntime.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = threads
    session = onnxruntime.InferenceSession(buf.getvalue(), opts, providers=["CPUExecutionProvider"])
    feed = {"x": x.numpy()}
    return lambda: torch.from_numpy(session.run(None, feed)[0])


def timed(runners: dict, repeats: int, warmup: int = 3) -> dict[str, float]:
    times = {k: [] for k in runners}
    order = list(runners)
    with torch.no_grad():
        for i in range(warmup + repeats):
            shift = i % len(order)
            for k in order[shift:] + order[:shift]:
                t0 = time.perf_counter()
                runners[k]()
                if i >= warmup:
                    times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sparsity", type=float, default=0.9)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--size", type=int, default=224)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")  # sparse CSR "beta" notice

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
        torch.testing.assert_close(runners["ort compact"](), ticket(x), rtol=1e-4, atol=1e-4)
    med = timed(runners, args.repeats)

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
        heads[label] = timed({"dense": lambda h=head, f=feats: h(f), "csr": lambda h=csr, f=feats: h(f)},
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
