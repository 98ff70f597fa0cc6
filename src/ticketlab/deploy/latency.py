"""Inference latency of finished levels, measured side by side: what a ticket costs where it is deployed.

Sparsity says how many weights are gone, not how fast the ticket runs: a dense kernel multiplies a zero
as fast as any number, so only removed channels (or a sparse kernel) save time. `level_latency` loads
each level as `ticketlab export --compact` would deploy it (`deploy.compact`: every channel that provably
cannot change the outputs removed; a channel ticket loses its pruned channels), and times it on the
level's own example input (one validation image) with PyTorch eager on the CPU, or ONNX Runtime's CPU
provider. Timings are only comparable within one process on one machine at one moment, so every model
is timed in the same loop: each round calls every model once, in an order that rotates by one each
round (so no model always runs right after the same neighbour), and the median of the rounds is kept.
`ticketlab report` calls this at report time for a study whose cells differ in `prune.granularity`.
"""

from __future__ import annotations

import copy
import io
import statistics
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from ticketlab.analysis.latency_sections import LatencyTimer
from ticketlab.deploy.compact import compact
from ticketlab.deploy.flops import count_macs
from ticketlab.deploy.ticket import Ticket, load_ticket
from ticketlab.errors import TicketlabError

RUNTIMES = ("torch", "onnx")


@dataclass(frozen=True)
class LevelLatency:
    seconds: float         # median of the interleaved rounds
    macs: int              # multiply-accumulates of the deployed (compacted) model on the example input
    params: int            # parameters of the deployed model
    runtime: str


def interleaved_medians(runners: dict[str, Callable[[], Any]], repeats: int, warmup: int = 3) -> dict[str, float]:
    """Seconds per call of each runner: `warmup` + `repeats` rounds, each calling every runner once in
    an order rotated by one per round; the median over the timed rounds."""
    if repeats < 1:
        raise TicketlabError(f"latency: repeats must be 1 or more, got {repeats}")
    times: dict[str, list[float]] = {k: [] for k in runners}
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


def torch_runner(model: nn.Module, example: Any) -> Callable[[], Any]:
    return lambda: model(example)


def onnx_runner(model: nn.Module, example: torch.Tensor, threads: int) -> Callable[[], Any]:
    """`model` exported to ONNX (dynamo=False, opset 17, as `ticketlab export`) in an ONNX Runtime CPU
    session with `threads` intra- and inter-op threads; calls run it on `example` and return its outputs."""
    import onnxruntime

    if not torch.is_tensor(example):
        raise TicketlabError("latency: the ONNX runtime here times models called with one tensor; "
                             "use runtime torch for this model")
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings
        torch.onnx.export(model, (example,), buf, dynamo=False, opset_version=17, input_names=["x"])
    opts = onnxruntime.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = threads
    session = onnxruntime.InferenceSession(buf.getvalue(), opts, providers=["CPUExecutionProvider"])
    feed = {"x": example.detach().cpu().numpy()}
    return lambda: [torch.from_numpy(o) for o in session.run(None, feed)]


@dataclass
class Deployed:
    """A level as `ticketlab export --compact` deploys it, on the CPU in eval mode."""
    ticket: Ticket
    model: nn.Module
    example: Any                # the level's own example input, on the CPU
    channels: tuple[int, int]   # (kept, total) channel units of a channel ticket; (0, 0) for any other


def deployed_model(level_dir: Path) -> Deployed:
    """Load level `level_dir` and compact a copy of its model: a channel ticket's removed channels go,
    then every hidden channel that provably cannot change the outputs (`deploy.compact`)."""
    ticket = load_ticket(Path(level_dir))
    units = ticket.units()
    model = copy.deepcopy(ticket.model).cpu().eval()
    example = _to_cpu(ticket.example)
    compact(model, units, example)
    kept = sum(int(a.sum()) for a in units.values())
    return Deployed(ticket, model, example, (kept, sum(a.numel() for a in units.values())))


def level_latency(level_dirs: Sequence[Path], runtime: str = "torch", repeats: int = 20,
                  threads: int = 1) -> dict[Path, LevelLatency]:
    """Each level deployed (`deployed_model`) and timed in one interleaved loop (module docstring) on
    the CPU with `threads` threads; keyed by the level dirs as given."""
    if runtime not in RUNTIMES:
        raise TicketlabError(f"latency: runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        runners, facts = {}, {}
        for i, level_dir in enumerate(level_dirs):
            d = deployed_model(Path(level_dir))
            facts[i] = (count_macs(d.model, d.example).remaining, sum(p.numel() for p in d.model.parameters()))
            runners[i] = (torch_runner(d.model, d.example) if runtime == "torch"
                          else onnx_runner(d.model, d.example, threads))
        medians = interleaved_medians(runners, repeats)
    finally:
        torch.set_num_threads(previous)
    return {Path(d): LevelLatency(medians[i], *facts[i], runtime) for i, d in enumerate(level_dirs)}


def _to_cpu(example: Any) -> Any:
    if torch.is_tensor(example):
        return example.cpu()
    if isinstance(example, (list, tuple)):
        return type(example)(_to_cpu(e) for e in example)
    return example


def report_timer(repeats: int = 20, threads: int = 1) -> LatencyTimer:
    """What `ticketlab report` times levels with: `level_latency` in PyTorch on the CPU."""
    def measure(level_dirs: Sequence[Path]) -> dict[Path, float]:
        return {d: r.seconds for d, r in level_latency(level_dirs, "torch", repeats, threads).items()}
    return LatencyTimer(measure, f"each level compacted (ticketlab.deploy.compact) and run on its run's first "
                                 f"validation image, PyTorch eager on the CPU with {threads} thread(s), median of "
                                 f"{repeats} interleaved rounds over every level (ticketlab.deploy.latency)")
