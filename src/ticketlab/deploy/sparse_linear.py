"""CSR storage for the box head's linear layers (fc6, fc7 of torchvision's TwoMLPHead).

A sparse matmul only pays when the weight is very sparse: measured on a 2-core AVX2 CPU with one
thread, `torch.sparse.mm(W_csr, xᵀ)ᵀ` beat the dense `F.linear` for the lite box head
(150 RoIs, 3136 → 256) only at ~97% sparsity (2.1 vs 9.2 ms); at 80–90% it was 1.3–2.5× slower, and
for the full-size head (1000 RoIs, 12544 → 1024) slower at every sparsity tried (bench/latency.py
measures it on the ticket at hand). ONNX Runtime's CPU kernels are dense, so this is PyTorch only.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.detection.faster_rcnn import TwoMLPHead


class CsrLinear(nn.Module):
    """`nn.Linear` with its weight stored as a CSR tensor (same outputs, up to summation order)."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.register_buffer("weight", linear.weight.detach().to_sparse_csr())
        self.register_buffer("bias", linear.bias.detach().clone() if linear.bias is not None else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.sparse.mm(self.weight, x.t()).t()
        return y + self.bias if self.bias is not None else y


def csr_box_head(model: nn.Module) -> list[str]:
    """Swap, in place, every TwoMLPHead's fc6 and fc7 for `CsrLinear`; returns the module paths."""
    swapped = []
    for path, m in list(model.named_modules()):
        if isinstance(m, TwoMLPHead):
            for name in ("fc6", "fc7"):
                setattr(m, name, CsrLinear(getattr(m, name)))
                swapped.append(f"{path}.{name}" if path else name)
    return swapped
