"""CSR storage for the box head's linear layers (fc6, fc7 of torchvision's TwoMLPHead).

A sparse matmul only pays when the weight is very sparse. On a 2-core AVX2 CPU with one thread,
`torch.sparse.mm(W_csr, xᵀ)ᵀ` vs the dense `F.linear` for weights with uniformly random zeros:
at 80–90% sparsity slower for both the lite box head (150 RoIs, 3136 → 256; 0.4–0.8×) and the
full-size one (1000 RoIs, 12544 → 1024; 0.06–0.2×); at 97% faster for the lite head (4.5×), still
slower for the full-size one (0.6×). bench/latency.py measures magnitude-pruned heads. ONNX Runtime's CPU kernels are dense, so this is PyTorch only
(TorchScript keeps the CSR buffers).
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
