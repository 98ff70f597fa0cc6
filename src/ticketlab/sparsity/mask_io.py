"""Mask files: ticketlab's bit-packed safetensors format, plus importers for other tools' masks.

The format is a DESIGN.md contract: for each parameter name a 1-D uint8 tensor holding
`numpy.packbits(mask.flatten(), bitorder="little")` (about n/8 bytes for n weights), and metadata
{"format": "ticketlab-mask/1", "bitorder": "little", "shapes": JSON name → shape}. Writes are
atomic. Nothing here ever unpickles arbitrary objects: PyTorch files (torch.nn.utils.prune state
dicts, open_lth `mask.pth`) are read with `torch.load(..., weights_only=True)` only.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from safetensors import safe_open

from ticketlab.atomic import atomic_save_safetensors
from ticketlab.errors import TicketlabError

FORMAT = "ticketlab-mask/1"
BITORDER = "little"
_LIST_MAX = 8


def _listing(items: list[str]) -> str:
    """The first names of a list, control characters escaped: an error stays one line."""
    shown = ", ".join("".join(c if c.isprintable() else repr(c)[1:-1] for c in i) for i in items[:_LIST_MAX])
    return shown + (f" (+{len(items) - _LIST_MAX} more)" if len(items) > _LIST_MAX else "")


def pack(mask: torch.Tensor) -> torch.Tensor:
    """A bool tensor → its row-major bits packed 8 per byte (little bit order), 1-D uint8."""
    bits = mask.detach().to("cpu", torch.bool).reshape(-1).numpy()
    return torch.from_numpy(np.packbits(bits, bitorder=BITORDER))


def unpack(packed: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    n = math.prod(shape)
    bits = np.unpackbits(packed.numpy(), count=n, bitorder=BITORDER)
    return torch.from_numpy(bits.astype(bool)).reshape(shape)


def save_mask(path: str | os.PathLike, mask: Mapping[str, torch.Tensor]) -> None:
    """Write `mask` (name → bool tensor) to `path` in the ticketlab-mask/1 format, atomically."""
    for name, m in mask.items():
        if m.dtype != torch.bool:
            raise TicketlabError(f"save_mask {path}: mask[{name!r}] must be a bool tensor, got {m.dtype}")
    shapes = {name: list(m.shape) for name, m in mask.items()}
    meta = {"format": FORMAT, "bitorder": BITORDER, "shapes": json.dumps(shapes)}
    atomic_save_safetensors(path, {name: pack(m) for name, m in mask.items()}, meta)


def _parse_shapes(path: Path, raw: str | None) -> dict[str, tuple[int, ...]]:
    try:
        shapes = json.loads(raw) if raw is not None else None
    except json.JSONDecodeError:
        shapes = None
    ok = isinstance(shapes, dict) and all(
        isinstance(v, list) and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in v)
        for v in shapes.values())
    if not ok:
        raise TicketlabError(f"{path}: metadata 'shapes' must be a JSON object name → list of sizes")
    return {k: tuple(v) for k, v in shapes.items()}


def check_shapes(
    where: str, found: Mapping[str, tuple[int, ...]], expected: Mapping[str, tuple[int, ...]]
) -> None:
    """One error listing every missing, unexpected and mis-shaped name (if any)."""
    missing = [n for n in expected if n not in found]
    unexpected = [n for n in found if n not in expected]
    wrong = [f"{n} {tuple(found[n])} != model {tuple(expected[n])}" for n in expected
             if n in found and tuple(found[n]) != tuple(expected[n])]
    parts = []
    if missing:
        parts.append(f"missing {len(missing)}: {_listing(missing)}")
    if unexpected:
        parts.append(f"unexpected {len(unexpected)}: {_listing(unexpected)}")
    if wrong:
        parts.append(f"wrong shape {len(wrong)}: {_listing(wrong)}")
    if parts:
        raise TicketlabError(f"{where}: mask does not fit the model: " + "; ".join(parts))


def load_mask(
    path: str | os.PathLike, expected_shapes: Mapping[str, tuple[int, ...]] | None = None
) -> dict[str, torch.Tensor]:
    """Read a ticketlab-mask/1 file; with `expected_shapes`, check every name and shape."""
    path = Path(path)
    if not path.is_file():
        raise TicketlabError(f"{path}: mask file not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            keys = list(f.keys())
            packed = {k: f.get_tensor(k) for k in keys}
    except TicketlabError:
        raise
    except Exception as e:  # safetensors raises its own error types for a malformed header
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        raise TicketlabError(f"{path}: not a readable safetensors mask file ({type(e).__name__}: {first})") from None
    if meta.get("format") != FORMAT:
        raise TicketlabError(f"{path}: metadata 'format' is {meta.get('format')!r}, expected {FORMAT!r}")
    if meta.get("bitorder") != BITORDER:
        raise TicketlabError(f"{path}: metadata 'bitorder' is {meta.get('bitorder')!r}, expected {BITORDER!r}")
    shapes = _parse_shapes(path, meta.get("shapes"))
    if set(shapes) != set(keys):
        odd = sorted(set(shapes) ^ set(keys))
        raise TicketlabError(f"{path}: metadata 'shapes' and stored tensors differ on: {_listing(odd)}")
    for k in keys:
        t = packed[k]
        want = (math.prod(shapes[k]) + 7) // 8
        if t.dtype != torch.uint8 or t.dim() != 1 or t.numel() != want:
            raise TicketlabError(f"{path}: {k!r} holds {t.dtype} {tuple(t.shape)}, expected uint8 ({want},) "
                                 f"for shape {shapes[k]}")
    if expected_shapes is not None:
        check_shapes(str(path), shapes, expected_shapes)
        keys = [k for k in expected_shapes]
    return {k: unpack(packed[k], shapes[k]) for k in keys}


# -- other tools' masks ----------------------------------------------------------------------------


def _as_bool(where: str, name: str, t: Any) -> torch.Tensor:
    if not torch.is_tensor(t):
        raise TicketlabError(f"{where}: {name!r} is a {type(t).__name__}, expected a 0/1 tensor")
    if t.dtype == torch.bool:
        return t.clone()
    if t.is_complex() or not bool(((t == 0) | (t == 1)).all()):
        raise TicketlabError(f"{where}: {name!r} is not a 0/1 mask (values other than 0 and 1)")
    return t != 0


def import_torch_prune(state_dict: Mapping[str, Any], where: str = "state dict") -> dict[str, torch.Tensor]:
    """Masks from a model pruned with torch.nn.utils.prune: '<module>.<param>_mask' → '<module>.<param>'."""
    out = {k[: -len("_mask")]: _as_bool(where, k, v) for k, v in state_dict.items() if k.endswith("_mask")}
    if not out:
        raise TicketlabError(f"{where}: no '<param>_mask' entries (not a torch.nn.utils.prune state dict)")
    return out


def _load_weights_only(path: Path) -> Any:
    if not path.is_file():
        raise TicketlabError(f"{path}: mask file not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # UnpicklingError for forbidden globals, RuntimeError/EOFError for junk
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise TicketlabError(f"{path}: not a plain PyTorch tensor file (refused to unpickle it: {first[:200]})") from None


def _open_lth_dict(path: Path, obj: Any) -> dict[str, torch.Tensor]:
    if not isinstance(obj, dict) or not obj or not all(isinstance(k, str) for k in obj):
        raise TicketlabError(f"{path}: expected a dict of parameter name → 0/1 tensor (open_lth mask.pth)")
    return {k: _as_bool(str(path), k, v) for k, v in obj.items()}


def import_open_lth(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """An open_lth `mask.pth` (dict name → 0/1 tensor), read with weights_only=True."""
    path = Path(path)
    return _open_lth_dict(path, _load_weights_only(path))


def _looks_like_safetensors(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) < 9:
        return False
    return head[8:9] == b"{" and int.from_bytes(head[:8], "little") < path.stat().st_size


def load_any_mask(path: str | os.PathLike, expected_shapes: Mapping[str, tuple[int, ...]] | None = None
                  ) -> dict[str, torch.Tensor]:
    """A mask from a ticketlab .safetensors file, a torch.nn.utils.prune state dict or an open_lth
    mask.pth, told apart by content."""
    path = Path(path)
    if not path.is_file():
        raise TicketlabError(f"{path}: mask file not found")
    if _looks_like_safetensors(path):
        return load_mask(path, expected_shapes)
    obj = _load_weights_only(path)
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if isinstance(obj, dict) and any(isinstance(k, str) and k.endswith("_mask") for k in obj):
        mask = import_torch_prune(obj, str(path))
    else:
        mask = _open_lth_dict(path, obj)
    if expected_shapes is not None:
        check_shapes(str(path), {k: tuple(v.shape) for k, v in mask.items()}, expected_shapes)
        mask = {k: mask[k] for k in expected_shapes}
    return mask
