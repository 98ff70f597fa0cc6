"""Mixed precision on CUDA: bf16 autocast, or fp16 with loss scaling (`train.amp_dtype`; `auto`
takes bf16 where the GPU supports it).

On CPU (or with amp off) everything here is a no-op, so the loop has one code path and CPU results
do not depend on the AMP settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from ticketlab.errors import TicketlabError

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class Amp:
    device_type: str
    dtype: Optional[torch.dtype]  # None = full precision
    scaler: torch.amp.GradScaler  # disabled unless dtype is float16

    @property
    def enabled(self) -> bool:
        return self.dtype is not None

    def autocast(self) -> torch.autocast:
        return torch.autocast(self.device_type, dtype=self.dtype, enabled=self.dtype is not None)


def amp_for(device: torch.device, enabled: bool, dtype_name: str = "auto") -> Amp:
    """`cfg.amp`, `cfg.amp_dtype` on `device` → the autocast dtype and grad scaler to use (amp is
    ignored on CPU)."""
    dtype: Optional[torch.dtype] = None
    if enabled and device.type == "cuda":
        if dtype_name == "auto":
            dtype_name = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        if dtype_name not in DTYPES:
            raise TicketlabError(f"train.amp_dtype: expected auto, bf16 or fp16, got {dtype_name!r}")
        if dtype_name == "bf16" and not torch.cuda.is_bf16_supported():
            raise TicketlabError(f"train.amp_dtype: bf16 is not supported by {torch.cuda.get_device_name(device)}; "
                                 "use fp16 (with loss scaling) or auto")
        dtype = DTYPES[dtype_name]
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    return Amp(device_type=device.type, dtype=dtype, scaler=scaler)
