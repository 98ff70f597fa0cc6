"""Where training runs and how repeatable it is: device choice, seeding, deterministic kernels.

A config says `device: auto|cpu|cuda|cuda:N`; asking for a GPU that is not there must be a clear
error, not a silent CPU run that takes a hundred times longer. Determinism is applied as a context
manager so that the global torch flags are restored when a level finishes.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
from typing import Iterator

import numpy as np
import torch

from ticketlab.errors import TicketlabError

_CUDA_RE = re.compile(r"^cuda(?::(\d+))?$")
CUBLAS_ENV = "CUBLAS_WORKSPACE_CONFIG"
CUBLAS_DETERMINISTIC = ":4096:8"


def resolve_device(spec: str) -> torch.device:
    """'auto' → cuda if available else cpu; 'cpu'; 'cuda' / 'cuda:N' (checked to exist)."""
    spec = str(spec).strip().lower()
    if spec == "auto":
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    if spec == "cpu":
        return torch.device("cpu")
    m = _CUDA_RE.match(spec)
    if m is None:
        raise TicketlabError(f"train.device: expected auto, cpu, cuda or cuda:N, got {spec!r}")
    if not torch.cuda.is_available():
        raise TicketlabError(f"train.device: {spec!r} was asked for but no CUDA device is available "
                             "(use device: cpu or auto)")
    index = int(m.group(1)) if m.group(1) is not None else None
    count = torch.cuda.device_count()
    if index is not None and index >= count:
        raise TicketlabError(f"train.device: {spec!r} does not exist; this machine has {count} CUDA "
                             f"device(s) (cuda:0…cuda:{count - 1})")
    return torch.device("cuda", index) if index is not None else torch.device("cuda")


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's (CPU and every CUDA device) global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextlib.contextmanager
def deterministic_mode(enabled: bool = True) -> Iterator[None]:
    """Use deterministic kernels inside the block; restore the previous global flags after it.

    On CUDA, cuBLAS needs `CUBLAS_WORKSPACE_CONFIG=:4096:8` for repeatable matmuls. It is set here
    when absent, but cuBLAS reads it when its handle is created: if CUDA matmuls already ran in this
    process, export it in the shell before starting instead. Ops with no deterministic
    implementation warn (warn_only) rather than stop a training run.
    """
    if not enabled:
        yield
        return
    prev_alg = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    prev_bench = torch.backends.cudnn.benchmark
    prev_det = torch.backends.cudnn.deterministic
    set_env = CUBLAS_ENV not in os.environ
    if set_env:
        os.environ[CUBLAS_ENV] = CUBLAS_DETERMINISTIC
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(prev_alg, warn_only=prev_warn)
        torch.backends.cudnn.benchmark = prev_bench
        torch.backends.cudnn.deterministic = prev_det
        if set_env:
            os.environ.pop(CUBLAS_ENV, None)
