"""IDX files (the format of MNIST and Fashion-MNIST), read and checked without torchvision.

An IDX file is a 4-byte magic number — two zero bytes, a type code (0x08 = unsigned byte) and the
number of dimensions — then one big-endian uint32 per dimension, then the values row-major. The
files are published gzipped (`*-ubyte.gz`, as Debian installs them too) and are often kept
un-gzipped (torchvision's `*/raw/` layout); both are read. Every check a truncated, corrupt or
swapped file could fail — magic number, number of dimensions, the dimensions themselves, the byte
count — ends in one line naming the file and what was expected.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from ticketlab.errors import TicketlabError

UBYTE = 0x08
HEADER = 4


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:  # gzip raises BadGzipFile (an OSError) or EOFError
        raise TicketlabError(f"{path}: not a readable gzip file ({e})") from None


def read_idx(path: Path, shape: Sequence[Optional[int]]) -> torch.Tensor:
    """The uint8 array stored in IDX file `path`, checked against `shape` (None = any size)."""
    data = _read_bytes(path)
    ndim = len(shape)
    expected = "x".join("N" if d is None else str(d) for d in shape)
    if len(data) < HEADER or data[0] != 0 or data[1] != 0:
        raise TicketlabError(f"{path}: not an IDX file (expected the magic number 0x0000{UBYTE:02x}{ndim:02x})")
    if data[2] != UBYTE or data[3] != ndim:
        raise TicketlabError(f"{path}: IDX magic number 0x{data[:4].hex()}, expected 0x0000{UBYTE:02x}{ndim:02x} "
                             f"(unsigned bytes, {ndim} dimension{'s' if ndim > 1 else ''}: {expected})")
    if len(data) < HEADER + 4 * ndim:
        raise TicketlabError(f"{path}: truncated IDX header (expected {ndim} dimensions)")
    dims = [int.from_bytes(data[HEADER + 4 * i:HEADER + 4 * (i + 1)], "big") for i in range(ndim)]
    if any(want is not None and got != want for got, want in zip(dims, shape)):
        raise TicketlabError(f"{path}: IDX dimensions {'x'.join(map(str, dims))}, expected {expected}")
    body = len(data) - HEADER - 4 * ndim
    size = int(np.prod(dims))
    if body != size:
        what = "truncated" if body < size else "has trailing bytes"
        raise TicketlabError(f"{path}: {what}: {body} data bytes, expected {size} for dimensions "
                             f"{'x'.join(map(str, dims))}")
    array = np.frombuffer(data, dtype=np.uint8, offset=HEADER + 4 * ndim).reshape(dims)
    return torch.from_numpy(array.copy())
