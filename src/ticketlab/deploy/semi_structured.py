"""2:4 tickets for PyTorch's semi-structured sparse kernels on CUDA, dense everywhere else.

NVIDIA GPUs from Ampere on (compute capability 8.0+) multiply a weight in which every group of 4
consecutive inputs holds at most 2 nonzeros with sparse tensor cores; PyTorch exposes them as
`torch.sparse.to_sparse_semi_structured`, which stores such a weight compressed (the 2 values and
their positions per group) and runs `F.linear` on it. A `prune.granularity: 2:4` ticket has exactly that
pattern along the input dimension of every pruned layer.

Chosen: `torch.sparse.to_sparse_semi_structured` itself, for `nn.Linear` layers only. torchao 0.18's
`sparsify_(model, semi_sparse_weight())` wraps the same kernels and also converts linear layers only
(its default filter is `isinstance(module, nn.Linear)`); neither has a 2:4 convolution, so convs stay
dense (their zeros cost a dense kernel as much as any value). A layer is converted when its weight
has the pattern and a shape the CUTLASS kernels accept for float16/bfloat16 (rows a multiple of 32,
columns a multiple of 64; cuSPARSELt accepts more, CUTLASS is the fallback when it is missing).

The exported file (`ticketlab export LEVEL --format semi_structured`, registered here) is the
ticket's plain state_dict as safetensors, zeros baked in, so it loads into the stock architecture and
runs unchanged, dense, on any device; its metadata names the layers to convert. It takes N:M tickets
whose pattern is 2:4's or sparser along 4 inputs (prune.granularity 2:4, 1:4) and keeps the
ticket's layer shapes (no --compact, no CSR layers). `load_semi_structured`
loads it and, only on a CUDA device of compute capability 8.0+, converts those layers (after casting
the model to float16 or bfloat16, the dtypes the kernels take). Not measured here: the project's
machines have no GPU (docs/benchmarks.md).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Union

import safetensors
import safetensors.torch
import torch
from torch import nn

from ticketlab.deploy.formats import COMPACT_NONE, ExportFormat, architecture_note
from ticketlab.deploy.ticket import Ticket, flat_outputs
from ticketlab.errors import TicketlabError
from ticketlab.registry import EXPORT_FORMATS

META_KEY = "ticketlab_semi_structured"
PATTERN = (2, 4)                 # what the kernels take: at most 2 nonzeros in every 4 consecutive inputs
ROW_MULTIPLE, COL_MULTIPLE = 32, 64   # CUTLASS float16/bfloat16 shape constraint (out, in)
KERNEL_DTYPES = (torch.float16, torch.bfloat16)


def has_pattern(weight: torch.Tensor, n: int = PATTERN[0], m: int = PATTERN[1]) -> bool:
    """True when every group of `m` consecutive entries along the last dimension holds at most `n`
    nonzeros (a last dimension not divisible by `m` has no such grouping: False)."""
    if weight.shape[-1] % m:
        return False
    groups = (weight.detach() != 0).reshape(-1, m)
    return bool((groups.sum(dim=1) <= n).all())


def convertible_layers(model: nn.Module) -> dict[str, str]:
    """Every linear layer → "2:4" when it will be converted, else why not."""
    verdict = {}
    for path, mod in model.named_modules():
        if not isinstance(mod, nn.Linear):
            continue
        rows, cols = mod.weight.shape
        if not has_pattern(mod.weight):
            verdict[path] = "weight is not 2:4"
        elif rows % ROW_MULTIPLE or cols % COL_MULTIPLE:
            verdict[path] = f"shape {rows}x{cols} is not a multiple of {ROW_MULTIPLE}x{COL_MULTIPLE}"
        else:
            verdict[path] = "2:4"
    return verdict


def file_metadata(model: nn.Module) -> dict[str, str]:
    """The safetensors metadata of the exported file: which layers a CUDA loader converts, and why the
    other linear layers stay dense. Raises when no layer can be converted."""
    verdict = convertible_layers(model)
    layers = [p for p, v in verdict.items() if v == "2:4"]
    if not layers:
        why = "; ".join(f"{p}: {v}" for p, v in verdict.items()) or "the model has no linear layer"
        raise TicketlabError(f"--format semi_structured: no linear layer can use the 2:4 kernels ({why}); "
                             "prune with prune.granularity 2:4 and give the layers a supported shape")
    dense = {p: v for p, v in verdict.items() if v != "2:4"}
    return {"format": "pt", META_KEY: json.dumps({"pattern": "2:4", "layers": layers, "dense": dense})}


def semi_structured_bytes(model: nn.Module) -> bytes:
    """The state_dict as safetensors with `file_metadata`."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    return safetensors.torch.save(state, metadata=file_metadata(model))


def read_layers(path: Union[str, Path]) -> list[str]:
    """The layers an exported file says to convert."""
    with safetensors.safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if META_KEY not in meta:
        raise TicketlabError(f"{path}: not written by `ticketlab export --format semi_structured` "
                             f"(no {META_KEY} metadata)")
    return list(json.loads(meta[META_KEY])["layers"])


def kernels_available(device: torch.device) -> bool:
    """Whether `device` runs PyTorch's semi-structured kernels (CUDA, compute capability 8.0+)."""
    device = torch.device(device)
    return device.type == "cuda" and torch.cuda.is_available() and torch.cuda.get_device_capability(device) >= (8, 0)


def to_semi_structured_(model: nn.Module, layers: list[str]) -> list[str]:
    """Swap, in place, each named linear layer's weight for its semi-structured sparse form; the model
    must be on a device with the kernels and in float16/bfloat16. Returns the layers converted."""
    for path in layers:
        linear = model.get_submodule(path)
        w = linear.weight
        if not kernels_available(w.device):
            raise TicketlabError(f"{path}: semi-structured kernels need a CUDA device of compute capability 8.0+, "
                                 f"the weight is on {w.device}")
        if w.dtype not in KERNEL_DTYPES:
            raise TicketlabError(f"{path}: semi-structured kernels take float16 or bfloat16 weights, got {w.dtype}")
        linear.weight = nn.Parameter(torch.sparse.to_sparse_semi_structured(w.detach()), requires_grad=False)
    return list(layers)


def load_semi_structured(model: nn.Module, path: Union[str, Path], device: Union[str, torch.device] = "cpu",
                         dtype: torch.dtype = torch.float16) -> list[str]:
    """Load an exported file into `model` (the ticket's architecture, strict) on `device`. Where the
    kernels run (CUDA 8.0+) the model is cast to `dtype` and the file's layers are converted; anywhere
    else it stays a dense float model and runs unchanged. Returns the layers converted."""
    state = safetensors.torch.load_file(str(path))
    model.load_state_dict(state, strict=True)
    device = torch.device(device)
    model.to(device).eval()
    if not kernels_available(device):
        return []
    model.to(dtype)
    return to_semi_structured_(model, read_layers(path))


def _export_file(model: nn.Module, ticket: Ticket, path: Path) -> tuple[bytes, list[torch.Tensor], str]:
    """The state_dict with the 2:4 layers named in its metadata; checked as the dense model it is on
    every device without the kernels."""
    data = semi_structured_bytes(model)
    fresh = ticket.experiment.fresh_model(seed=0)
    fresh.load_state_dict(safetensors.torch.load(data), strict=True)
    fresh.eval()
    with torch.no_grad():
        return data, flat_outputs(fresh(ticket.example)), "load_state_dict(strict=True), dense, into a freshly built model"


def _export_notes(model: nn.Module, ticket: Ticket) -> list[str]:
    layers = [p for p, v in convertible_layers(model).items() if v == "2:4"]
    return [*architecture_note(model, ticket),
            f"2:4 layers for CUDA's semi-structured kernels (load_semi_structured): {', '.join(layers)}; "
            "the rest runs dense"]


EXPORT_FORMATS.register("semi_structured", ExportFormat(_export_file, ".semi_structured.safetensors",
                                                        compact=COMPACT_NONE, granularities=("2:4", "1:4"),
                                                        notes=_export_notes))
