"""`ticketlab export LEVEL --format state_dict|onnx|torchscript|semi_structured`: a level as a file to deploy.

- state_dict: the trained weights with the pruned ones exactly 0, under torchvision's own names, as
  safetensors (or torch.save format for a `.pt`/`.pth` path). A width-1 ResNet loads into
  `torchvision.models.resnetN(num_classes=K)`, a width-1 detector with 256 FPN channels into
  torchvision's FasterRCNN/MaskRCNN/KeypointRCNN on `resnet_fpn_backbone`, both with strict=True.
  Any other width gives a state_dict for the same architecture at that width, not the stock one.
- torchscript: `torch.jit.script` (detectors return torchvision's scripted (losses, detections)).
- semi_structured: the state_dict plus the names of the 2:4 linear layers that PyTorch's
  semi-structured sparse kernels run on CUDA (`deploy/semi_structured.py`); dense elsewhere.
- onnx: `torch.onnx.export(..., dynamo=False)`. The TorchScript-based exporter is used because it
  handles torchvision's detectors (data-dependent NMS and RoI sampling) and runs offline in seconds;
  a detector graph is traced at the example image's size, so feed images of that size.

`compact=True` first removes the hidden channels that provably cannot change the outputs, and a
channel ticket's removed channels (`deploy/compact.py`). It changes layer shapes, so for
state_dict only a channel ticket compacts: its file loads (strict=True) into a freshly built model
with the same channels removed, and its metadata `ticketlab_kept_channels` lists them per group.
`csr_box_head=True` (torchscript only) stores the box head's fc6/fc7 as CSR (`deploy/sparse_linear.py`).

What each format needs (the granularity it takes, what --compact may remove in it, whether CSR
layers fit) is its `ExportFormat` declaration (`deploy/formats.py`), read here.

Every file is checked before it is written: it is loaded back with the runtime that will run it
(a fresh model + load_state_dict(strict=True), torch.jit.load, onnxruntime) and its outputs on a
real validation input are compared with the masked model's. Writes are atomic.
"""

from __future__ import annotations

import copy
import io
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import safetensors.torch
import torch
from torch import nn

from ticketlab.atomic import atomic_write_bytes
from ticketlab.deploy.compact import CompactionReport, compact as compact_model
from ticketlab.deploy.formats import COMPACT_ALL, COMPACT_CHANNELS, COMPACT_NONE, ExportFormat, architecture_note
from ticketlab.deploy.sparse_linear import csr_box_head as use_csr_box_head
from ticketlab.deploy.ticket import Ticket, flat_outputs, load_ticket, max_difference
from ticketlab.errors import TicketlabError
from ticketlab.registry import EXPORT_FORMATS

TORCH_SAVE_SUFFIXES = (".pt", ".pth")
ONNX_OPSET = 17
RTOL = ATOL = 1e-4  # float32 outputs after a different summation order (compaction, ONNX Runtime kernels)


@dataclass
class ExportResult:
    path: Path
    format: str
    runtime: str  # what ran the check
    bytes: int
    max_abs_diff: float
    compaction: Optional[CompactionReport] = None
    csr_layers: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _state_dict_file(model: nn.Module, ticket: Ticket, path: Path) -> tuple[bytes, list[torch.Tensor], str]:
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if path.suffix in TORCH_SAVE_SUFFIXES:
        buf = io.BytesIO()
        torch.save(state, buf)
        data = buf.getvalue()
        loaded = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    else:
        data = safetensors.torch.save(state, metadata={"format": "pt", **kept_channels_metadata(model, ticket)})
        loaded = safetensors.torch.load(data)
    fresh = ticket.experiment.fresh_model(seed=0)
    if model is not ticket.model:  # a compacted channel ticket: the same channels removed from a fresh model
        compact_model(fresh.eval(), ticket.units(), ticket.example, rules=False)
    fresh.load_state_dict(loaded, strict=True)
    fresh.eval()
    with torch.no_grad():
        return data, flat_outputs(fresh(ticket.example)), "load_state_dict(strict=True) into a freshly built model"


def kept_channels_metadata(model: nn.Module, ticket: Ticket) -> dict[str, str]:
    """A compacted channel ticket's kept channels per group, as JSON, so the architecture can be rebuilt."""
    if model is ticket.model or not ticket.units():
        return {}
    return {"ticketlab_kept_channels": json.dumps({name: alive.nonzero().squeeze(1).tolist()
                                                   for name, alive in ticket.units().items()})}


def _torchscript_file(model: nn.Module, ticket: Ticket, path: Path) -> tuple[bytes, list[torch.Tensor], str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # jit's deprecation notice; torchvision's "(Losses, Detections)" notice
        try:
            scripted = torch.jit.script(model)
        except (RuntimeError, torch.jit.frontend.NotSupportedError) as e:  # the compiler's own report
            reason = next((line.strip() for line in str(e).splitlines() if line.strip()), type(e).__name__)
            raise TicketlabError(f"--format torchscript: {ticket.cfg.model.family} does not compile with "
                                 f"torch.jit.script ({reason}); use --format onnx or state_dict") from None
        buf = io.BytesIO()
        torch.jit.save(scripted, buf)
        data = buf.getvalue()
        loaded = torch.jit.load(io.BytesIO(data), map_location=ticket.experiment.device)
        with torch.no_grad():
            return data, flat_outputs(loaded(ticket.example)), "torch.jit.load"


def _onnx_file(model: nn.Module, ticket: Ticket, path: Path) -> tuple[bytes, list[torch.Tensor], str]:
    import onnxruntime

    axes = {"images": {0: "batch"}} if ticket.task.batch_axis else None
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings on torchvision's shape arithmetic
        torch.onnx.export(model, (ticket.example,), buf, dynamo=False, opset_version=ONNX_OPSET,
                          input_names=["images"], dynamic_axes=axes)
    data = buf.getvalue()
    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    image = ticket.task.onnx_input(ticket.example)
    outputs = session.run(None, {session.get_inputs()[0].name: image.detach().cpu().numpy()})
    return data, [torch.from_numpy(o) for o in outputs], f"onnxruntime {onnxruntime.__version__} (CPU)"


def _traced_size_note(model: nn.Module, ticket: Ticket) -> list[str]:
    """A graph traced at one image size (a detector's: no batch axis) takes images of that size."""
    return [] if ticket.task.batch_axis else [f"traced at {tuple(ticket.example[0].shape)}: feed images of that size"]


EXPORT_FORMATS.register("state_dict", ExportFormat(_state_dict_file, ".safetensors", compact=COMPACT_CHANNELS,
                                                   notes=architecture_note))
EXPORT_FORMATS.register("onnx", ExportFormat(_onnx_file, ".onnx", notes=_traced_size_note))
EXPORT_FORMATS.register("torchscript", ExportFormat(_torchscript_file, ".torchscript.pt", csr_box_head=True))


def default_path(level_dir: Path, fmt: str, compact: bool) -> Path:
    return Path(level_dir) / f"ticket{'_compact' if compact else ''}{EXPORT_FORMATS.get(fmt).suffix}"


def _names(allowed: Callable[[ExportFormat], bool]) -> str:
    return " or ".join(f"--format {n}" for n, f in EXPORT_FORMATS.items() if allowed(f))


def export_level(level_dir: Path, fmt: str, out: Optional[Path] = None, *, compact: bool = False,
                 csr_box_head: bool = False) -> ExportResult:
    """Write level `level_dir` as `fmt`, after checking the file reproduces the masked model."""
    spec: ExportFormat = EXPORT_FORMATS.get(fmt)
    if compact and spec.compact == COMPACT_NONE:
        raise TicketlabError(f"--compact with --format {fmt}: the file keeps the ticket's own layer shapes; use "
                             + _names(lambda f: f.compact != COMPACT_NONE))
    if csr_box_head and not spec.csr_box_head:
        raise TicketlabError(f"--csr-box-head with --format {fmt}: sparse CSR weights run in PyTorch only; use "
                             + _names(lambda f: f.csr_box_head))
    ticket = load_ticket(Path(level_dir))
    refusal = spec.refusal(ticket.cfg.prune.granularity)
    if refusal is not None:
        raise TicketlabError(f"--format {fmt}: {refusal} ({level_dir}); nothing was written")
    if compact and spec.compact == COMPACT_CHANNELS and not ticket.units():
        raise TicketlabError(f"--compact with --format {fmt}: only a channel ticket (prune.granularity: channel) "
                             "compacts into a file its architecture can be rebuilt for; use "
                             + _names(lambda f: f.compact == COMPACT_ALL))
    path = Path(out) if out is not None else default_path(level_dir, fmt, compact)
    with torch.no_grad():
        reference = flat_outputs(ticket.model(ticket.example))
    model, report, swapped = ticket.model, None, []
    if compact or csr_box_head:
        model = copy.deepcopy(ticket.model)
        if compact:
            report = compact_model(model, ticket.units(), ticket.example, rules=spec.compact == COMPACT_ALL)
        if csr_box_head:
            swapped = use_csr_box_head(model)
            if not swapped:
                raise TicketlabError(f"--csr-box-head: {ticket.cfg.model.family} has no R-CNN box head")
    data, outputs, runtime = spec.write(model, ticket, path)
    diff = max_difference(reference, outputs, f"{path} checked with {runtime}")
    for a, b in zip(reference, outputs):
        if not torch.allclose(a.detach().cpu().double(), b.detach().cpu().double(), rtol=RTOL, atol=ATOL):
            raise TicketlabError(f"{path}: outputs differ from the masked model's by up to {diff:.3g} "
                                 f"(checked with {runtime}); nothing was written")
    atomic_write_bytes(path, data)
    return ExportResult(path, fmt, runtime, len(data), diff, report, swapped, spec.notes(model, ticket))
