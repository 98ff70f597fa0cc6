"""Atomic file writes: a run killed at any moment leaves the old file or the new one, never half.

Every file in a run directory goes through these helpers: write to a temporary name in the same
directory, fsync, then `os.replace` onto the final name (atomic on POSIX filesystems).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Mapping

import torch
from safetensors.torch import save as safetensors_bytes

TMP_PREFIX = ".tmp-"


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX + path.name + ".", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: object) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def atomic_save_safetensors(
    path: str | os.PathLike,
    tensors: Mapping[str, torch.Tensor],
    metadata: Mapping[str, str] | None = None,
) -> None:
    """Save tensors (made contiguous, on CPU) to `path` as safetensors, atomically."""
    plain = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    atomic_write_bytes(path, safetensors_bytes(plain, metadata=dict(metadata) if metadata else None))


def remove_stale_temporaries(directory: str | os.PathLike) -> int:
    """Delete half-written temporaries left by a killed process; returns how many were removed."""
    count = 0
    for p in Path(directory).rglob(TMP_PREFIX + "*"):
        if p.is_file():
            p.unlink()
            count += 1
    return count
