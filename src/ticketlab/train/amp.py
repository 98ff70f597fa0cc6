"""Mixed precision on CUDA: bf16 autocast where the GPU supports it, else fp16 with loss scaling.

On CPU (or with amp off) everything here is a no-op, so the loop has one code path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch


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


def amp_for(device: torch.device, enabled: bool) -> Amp:
    """`cfg.amp` on `device` → the autocast dtype and grad scaler to use (amp is ignored on CPU)."""
    dtype: Optional[torch.dtype] = None
    if enabled and device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    return Amp(device_type=device.type, dtype=dtype, scaler=scaler)
