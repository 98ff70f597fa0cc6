"""Sparsity report numbers, checked by hand on a tiny model."""

from __future__ import annotations

import pytest
from torch import nn

from ticketlab.sparsity import full_mask, sparsity_report


def _model():
    return nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.Flatten(), nn.Linear(4, 5))


GROUPS = {"conv": ("0",), "head": ("3",)}


def test_counts_kernels_groups_scope_and_network():
    m = _model()
    mask = full_mask({"0.weight": m[0].weight, "3.weight": m[3].weight})
    mask["0.weight"][0, 0] = False            # one whole kernel (3x3) gone
    mask["0.weight"][1, 1, 0, 0] = False      # one weight of another kernel
    mask["3.weight"][:] = False               # the linear layer entirely pruned
    rep = sparsity_report(m, mask, GROUPS)
    conv, lin = rep.tensors
    assert (conv.name, conv.group, conv.shape, conv.numel, conv.kept) == ("0.weight", "conv", (3, 2, 3, 3), 54, 44)
    assert (conv.kernels, conv.zero_kernels) == (6, 1)
    assert abs(conv.sparsity - 10 / 54) < 1e-12 and not conv.fully_pruned
    assert (lin.kept, lin.sparsity, lin.fully_pruned, lin.kernels) == (0, 1.0, True, None)
    assert [(g.group, g.numel, g.kept) for g in rep.groups] == [("conv", 54, 44), ("head", 20, 0)]
    network = 54 + 3 + 3 + 3 + 20 + 5  # conv w+b, bn w+b, linear w+b
    assert rep.network_numel == network
    assert abs(rep.scope_sparsity - 30 / 74) < 1e-12
    assert abs(rep.network_sparsity - 30 / network) < 1e-12
    rows = rep.to_rows()
    assert [r["kind"] for r in rows] == ["tensor", "tensor", "group", "group", "scope", "network"]
    assert rows[0]["shape"] == "3x2x3x3" and rows[1]["fully_pruned"] is True
    assert rows[-1]["removed"] == 30 and rep.summary()["sparsity_scope"] == rep.scope_sparsity


@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors")
def test_dense_ungrouped_and_zero_size():
    m = nn.Sequential(nn.Linear(3, 0), nn.Linear(0, 2))
    mask = full_mask({n: p for n, p in m.named_parameters() if n.endswith("weight")})
    rep = sparsity_report(m, mask)
    assert rep.scope_sparsity == 0.0 and rep.network_sparsity == 0.0
    assert all(t.sparsity == 0.0 and t.group is None and not t.fully_pruned for t in rep.tensors)
    assert rep.groups[0].group is None and rep.to_rows()[2]["name"] == "(no group)"
