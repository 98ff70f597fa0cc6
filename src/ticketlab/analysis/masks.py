"""What a ticket's mask looks like: overlap between masks, kept weights per layer, pruned kernels.

Paper 002 (§5, Fig. 6–7) compares tickets found in different ways by their *relative similarity*
|m_i ∩ m_j| / |m_i ∪ m_j| and by how many convolution kernels are pruned away entirely (a kernel is
weight[o, i, ...]; all-zero kernels are structure that hardware can skip); paper 001 (Fig. 2c)
shows the share of each layer that global pruning keeps. These are pure functions of masks
(`dict[str, BoolTensor]`, True = kept), so tests can check them on tiny hand-built tensors.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import torch

from ticketlab.errors import TicketlabError

Mask = Mapping[str, torch.Tensor]


def relative_similarity(a: Mask, b: Mask) -> float:
    """|a ∩ b| / |a ∪ b| of the kept weights, summed over the parameter names both masks hold.

    Two masks that keep nothing at all (empty union) have identical patterns: 1.0.
    """
    shared = [n for n in a if n in b]
    if not shared:
        raise TicketlabError("mask similarity: the two masks share no parameter name")
    inter = union = 0
    for name in shared:
        x, y = a[name].to(torch.bool), b[name].to(torch.bool)
        if tuple(x.shape) != tuple(y.shape):
            raise TicketlabError(f"mask similarity: {name!r} has shape {tuple(x.shape)} in one mask and "
                                 f"{tuple(y.shape)} in the other")
        inter += int(torch.count_nonzero(x & y))
        union += int(torch.count_nonzero(x | y))
    return inter / union if union else 1.0


def similarity_matrix(masks: Mapping[str, Mask]) -> tuple[list[str], np.ndarray]:
    """Labels (in the mapping's order) and the symmetric matrix of their pairwise relative similarity."""
    labels = list(masks)
    n = len(labels)
    matrix = np.zeros((n, n), dtype=np.float64)
    for i in range(n):
        for j in range(i, n):
            matrix[i, j] = matrix[j, i] = relative_similarity(masks[labels[i]], masks[labels[j]])
    return labels, matrix


def kept_per_layer(mask: Mask) -> list[tuple[str, float]]:
    """(name, fraction of the tensor kept) in the mask's order; a zero-size tensor lost nothing: 1.0."""
    out = []
    for name, m in mask.items():
        numel = m.numel()
        out.append((name, int(torch.count_nonzero(m)) / numel if numel else 1.0))
    return out


def is_conv(m: torch.Tensor) -> bool:
    """A mask of a convolution weight: (out, in, *kernel). Only conv and linear weights are ever in
    a scope, and linear weights are 2-D, so three or more dims means a convolution."""
    return m.dim() >= 3


def kernel_map(mask: Mask, name: str) -> np.ndarray:
    """out × in bool array of conv weight `name`: True where kernel [o, i, ...] is entirely pruned."""
    if name not in mask:
        raise TicketlabError(f"kernel map: no parameter {name!r} in the mask")
    m = mask[name]
    if not is_conv(m):
        raise TicketlabError(f"kernel map: {name!r} has shape {tuple(m.shape)}, not a convolution weight "
                             "(out, in, *kernel)")
    out_ch, in_ch = m.shape[0], m.shape[1]
    if m.numel() == 0:
        return np.zeros((out_ch, in_ch), dtype=bool)
    kept_any = m.to(torch.bool).reshape(out_ch, in_ch, -1).any(dim=2)
    return (~kept_any).cpu().numpy()


def zero_kernels(mask: Mask) -> dict[str, tuple[int, int]]:
    """name → (entirely pruned kernels, kernels) for every convolution weight in the mask."""
    out = {}
    for name, m in mask.items():
        if is_conv(m):
            k = kernel_map(mask, name)
            out[name] = (int(k.sum()), int(k.size))
    return out

