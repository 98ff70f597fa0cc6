"""How sparse a masked model is: per tensor, per group, over the scope and over the whole network.

Paper 001 reports both *scope sparsity* (removed / weights in the scope) and *network sparsity*
(removed / every parameter of the model, biases and norms included); paper 002 also looks at
whole kernels pruned away (a kernel = weight[o, i, ...] of a convolution). The report computes
all of them from the mask alone, and `to_rows()` gives plain dicts for tables, CSV and JSON.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Mapping, Sequence

import torch
from torch import nn

from ticketlab.errors import TicketlabError
from ticketlab.sparsity.channels import kept_rows
from ticketlab.sparsity.scope import group_of


def _fraction(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


@dataclass
class TensorRow:
    name: str
    group: str | None
    shape: tuple[int, ...]
    numel: int
    kept: int
    kernels: int | None = None         # conv weights only: out × in kernels
    zero_kernels: int | None = None    # kernels with every weight pruned
    channels: int | None = None        # conv/linear weights: output channels
    channels_kept: int | None = None   # … with some weight kept (a channel ticket's channel count)

    @property
    def removed(self) -> int:
        return self.numel - self.kept

    @property
    def sparsity(self) -> float:
        """Fraction removed (1.0 for an entirely pruned tensor; 0.0 for a zero-size one)."""
        return _fraction(self.removed, self.numel)

    @property
    def fully_pruned(self) -> bool:
        return self.numel > 0 and self.kept == 0


@dataclass
class GroupRow:
    group: str | None
    numel: int = 0
    kept: int = 0

    @property
    def sparsity(self) -> float:
        return _fraction(self.numel - self.kept, self.numel)


@dataclass
class SparsityReport:
    tensors: list[TensorRow]
    groups: list[GroupRow]
    scope_numel: int
    scope_kept: int
    network_numel: int                 # every parameter of the model

    @property
    def removed(self) -> int:
        return self.scope_numel - self.scope_kept

    @property
    def scope_sparsity(self) -> float:
        return _fraction(self.removed, self.scope_numel)

    @property
    def network_sparsity(self) -> float:
        return _fraction(self.removed, self.network_numel)

    def summary(self) -> dict[str, float | int]:
        return {"sparsity_scope": self.scope_sparsity, "sparsity_network": self.network_sparsity,
                "scope_weights": self.scope_numel, "scope_kept": self.scope_kept,
                "network_params": self.network_numel}

    def to_rows(self) -> list[dict]:
        """One dict per tensor, then one per group, then the scope and network totals."""
        rows = []
        for t in self.tensors:
            d = asdict(t)
            d.update(kind="tensor", shape="x".join(map(str, t.shape)), removed=t.removed, sparsity=t.sparsity,
                     fully_pruned=t.fully_pruned,
                     out_channels=f"{t.channels_kept}/{t.channels}" if t.channels is not None else "")
            rows.append(d)
        for g in self.groups:
            rows.append({"kind": "group", "name": g.group if g.group is not None else "(no group)",
                         "group": g.group, "numel": g.numel, "kept": g.kept,
                         "removed": g.numel - g.kept, "sparsity": g.sparsity})
        rows.append({"kind": "scope", "name": "scope", "numel": self.scope_numel, "kept": self.scope_kept,
                     "removed": self.removed, "sparsity": self.scope_sparsity})
        rows.append({"kind": "network", "name": "network", "numel": self.network_numel,
                     "kept": self.network_numel - self.removed, "removed": self.removed,
                     "sparsity": self.network_sparsity})
        return rows


def _kernel_counts(m: torch.Tensor) -> tuple[int, int]:
    """(kernels, all-zero kernels) of a conv mask shaped (out, in, *k)."""
    kernels = m.shape[0] * m.shape[1]
    if m.numel() == 0:
        return kernels, 0
    any_kept = m.reshape(kernels, -1).any(dim=1)
    return kernels, kernels - int(torch.count_nonzero(any_kept))


def sparsity_report(
    model: nn.Module, mask: Mapping[str, torch.Tensor], groups: Mapping[str, Sequence[str]] | None = None
) -> SparsityReport:
    """Sparsity of `model` under `mask`, by tensor and by module group (groups as in models/spec.py)."""
    groups = groups or {}
    params = dict(model.named_parameters())
    conv_weights = {f"{p}.weight" if p else "weight" for p, mod in model.named_modules()
                    if isinstance(mod, nn.modules.conv._ConvNd)}
    unknown = [n for n in mask if n not in params]
    if unknown:
        raise TicketlabError(f"sparsity report: mask names not in the model: {', '.join(unknown[:10])}")
    tensors: list[TensorRow] = []
    by_group: dict[str | None, GroupRow] = {}
    for name in (n for n in params if n in mask):
        m = mask[name]
        if tuple(m.shape) != tuple(params[name].shape):
            raise TicketlabError(f"sparsity report: mask[{name!r}] has shape {tuple(m.shape)}, "
                                 f"the parameter {tuple(params[name].shape)}")
        g = group_of(name, groups)
        row = TensorRow(name=name, group=g, shape=tuple(m.shape), numel=m.numel(),
                        kept=int(torch.count_nonzero(m)))
        if name in conv_weights and m.dim() >= 3:
            row.kernels, row.zero_kernels = _kernel_counts(m)
        if m.dim() >= 2:
            row.channels_kept, row.channels = kept_rows(m)
        tensors.append(row)
        gr = by_group.setdefault(g, GroupRow(group=g))
        gr.numel += row.numel
        gr.kept += row.kept
    network = sum(p.numel() for p in params.values())
    return SparsityReport(
        tensors=tensors,
        groups=list(by_group.values()),
        scope_numel=sum(t.numel for t in tensors),
        scope_kept=sum(t.kept for t in tensors),
        network_numel=network,
    )
