"""Atomic file writes: a run killed at any moment leaves the old file or the new one, never half.

Every file in a run directory goes through these helpers: write to a temporary name in the same
directory, fsync, then `os.replace` onto the final name (atomic on POSIX filesystems). A write that
fails for lack of space removes its temporary and says so in one line: the file it would have
replaced, and every finished level, are untouched.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path
from typing import Mapping

import torch
from safetensors.torch import save as safetensors_bytes

from ticketlab.errors import TicketlabError

TMP_PREFIX = ".tmp-"
OUT_OF_SPACE = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
                errno.EFBIG: "file too large for this filesystem"}


# The temporaries this process is writing now. A signal that ends the process without unwinding
# (`stop.exit_at_once`) removes them, as the except clause below would; the set is process-wide, like
# the signal handler that reads it.
_IN_FLIGHT: set[str] = set()


def remove_in_flight() -> None:
    """Delete the temporaries of the writes in progress (the files they would replace stay as they were)."""
    for tmp in list(_IN_FLIGHT):
        try:
            os.unlink(tmp)
        except OSError:  # renamed onto its final name, or never created
            pass


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX + path.name + ".", dir=path.parent)
    _IN_FLIGHT.add(tmp)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.errno in OUT_OF_SPACE:
            raise TicketlabError(f"{path}: {OUT_OF_SPACE[e.errno]} while writing {len(data)} bytes; files "
                                 "already written are intact: free space and rerun to resume") from None
        raise
    finally:
        _IN_FLIGHT.discard(tmp)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: object) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def _sorted_metadata(data: bytes) -> bytes:
    """The same safetensors bytes with the `__metadata__` keys in sorted order.

    The Rust writer keeps metadata in a hash map whose order changes from process to process, so
    two runs that computed the same thing would write different bytes. The header is re-serialised
    in the writer's compact form and padded back to its original length (offsets are relative to
    the header's end, so nothing else moves).
    """
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    if "__metadata__" not in header:
        return data
    header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    if len(text) > n:
        return data
    return data[:8] + text + b" " * (n - len(text)) + data[8 + n:]


def atomic_save_safetensors(
    path: str | os.PathLike,
    tensors: Mapping[str, torch.Tensor],
    metadata: Mapping[str, str] | None = None,
) -> None:
    """Save tensors (made contiguous, on CPU) to `path` as safetensors, atomically."""
    plain = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    data = safetensors_bytes(plain, metadata=dict(metadata) if metadata else None)
    atomic_write_bytes(path, _sorted_metadata(data))


def remove_stale_temporaries(directory: str | os.PathLike) -> int:
    """Delete half-written temporaries left by a killed process; returns how many were removed."""
    count = 0
    for p in Path(directory).rglob(TMP_PREFIX + "*"):
        if p.is_file():
            p.unlink()
            count += 1
    return count
