"""Mask analysis math (analysis/masks.py), checked by hand on tiny masks and against the sparsity report."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from ticketlab.analysis.masks import (
    kernel_map,
    kept_per_layer,
    relative_similarity,
    similarity_matrix,
    zero_kernels,
)
from ticketlab.errors import TicketlabError
from ticketlab.sparsity import complement, sparsity_report


def _random_mask(seed: int, shapes: dict[str, tuple[int, ...]], keep: float = 0.5) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {n: torch.rand(s, generator=g) < keep for n, s in shapes.items()}


SHAPES = {"conv.weight": (4, 3, 3, 3), "fc.weight": (5, 7)}


def test_similarity_with_itself_is_one_and_with_its_complement_zero():
    m = _random_mask(0, SHAPES)
    assert relative_similarity(m, m) == 1.0
    assert relative_similarity(m, complement(m)) == 0.0


def test_similarity_hand_computed():
    a = {"w": torch.tensor([[1, 1, 0], [0, 1, 0]], dtype=torch.bool),
         "v": torch.tensor([1, 0], dtype=torch.bool),
         "only_a": torch.ones(9, dtype=torch.bool)}
    b = {"w": torch.tensor([[1, 0, 0], [1, 1, 0]], dtype=torch.bool),
         "v": torch.tensor([0, 0], dtype=torch.bool)}
    # shared names w, v: intersection {w00, w11} = 2; union {w00, w01, w10, w11, v0} = 5; only_a ignored
    assert relative_similarity(a, b) == pytest.approx(2 / 5)
    assert relative_similarity(b, a) == pytest.approx(2 / 5)


def test_similarity_of_masks_that_keep_nothing_is_one():
    empty = {"w": torch.zeros(3, 3, dtype=torch.bool)}
    assert relative_similarity(empty, {"w": torch.zeros(3, 3, dtype=torch.bool)}) == 1.0


def test_similarity_errors_name_the_problem():
    with pytest.raises(TicketlabError, match="share no parameter"):
        relative_similarity({"a": torch.ones(2, dtype=torch.bool)}, {"b": torch.ones(2, dtype=torch.bool)})
    with pytest.raises(TicketlabError, match="'w' has shape"):
        relative_similarity({"w": torch.ones(2, dtype=torch.bool)}, {"w": torch.ones(3, dtype=torch.bool)})


def test_similarity_matrix_is_symmetric_with_ones_on_the_diagonal():
    masks = {f"m{i}": _random_mask(i, SHAPES, keep=0.3 + 0.2 * i) for i in range(3)}
    labels, mat = similarity_matrix(masks)
    assert labels == ["m0", "m1", "m2"]
    assert mat.shape == (3, 3)
    assert np.allclose(np.diag(mat), 1.0) and np.allclose(mat, mat.T)
    for i, a in enumerate(labels):
        for j, b in enumerate(labels):
            x = np.concatenate([masks[a][n].numpy().ravel() for n in SHAPES])
            y = np.concatenate([masks[b][n].numpy().ravel() for n in SHAPES])
            assert mat[i, j] == pytest.approx(np.sum(x & y) / np.sum(x | y))


def test_kept_per_layer_hand_computed():
    mask = {"a": torch.tensor([1, 1, 1, 0], dtype=torch.bool),
            "b": torch.zeros(2, 5, dtype=torch.bool),
            "empty": torch.zeros(0, 3, dtype=torch.bool)}
    assert kept_per_layer(mask) == [("a", 0.75), ("b", 0.0), ("empty", 1.0)]


def _hand_conv_mask() -> dict[str, torch.Tensor]:
    conv = torch.ones(3, 2, 3, 3, dtype=torch.bool)
    conv[0, 0] = False                 # whole kernel gone
    conv[1, 1, :2] = False             # most of a kernel, one row kept
    conv[2, :] = False                 # every kernel of output channel 2
    return {"conv.weight": conv, "fc.weight": torch.zeros(4, 6, dtype=torch.bool)}


def test_zero_kernels_and_kernel_map_hand_computed():
    mask = _hand_conv_mask()
    assert zero_kernels(mask) == {"conv.weight": (3, 6)}          # the linear layer has no kernels
    expected = np.array([[True, False], [False, False], [True, True]])
    km = kernel_map(mask, "conv.weight")
    assert km.dtype == bool and km.shape == (3, 2)
    assert np.array_equal(km, expected)


def test_kernel_map_rejects_missing_and_non_conv_names():
    mask = _hand_conv_mask()
    with pytest.raises(TicketlabError, match="no parameter 'nope'"):
        kernel_map(mask, "nope")
    with pytest.raises(TicketlabError, match="not a convolution"):
        kernel_map(mask, "fc.weight")


def test_zero_kernels_agree_with_the_sparsity_report():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 6, 1), nn.Conv2d(6, 5, 5), nn.Flatten(),
                          nn.Linear(20, 4))
    shapes = {n: tuple(p.shape) for n, p in model.named_parameters() if n.endswith("weight")}
    mask = _random_mask(7, shapes, keep=0.4)
    mask["0.weight"][2:4] = False       # force whole kernels away as well
    mask["3.weight"][:, 1] = False
    rows = {r.name: r for r in sparsity_report(model, mask).tensors}
    ours = zero_kernels(mask)
    assert set(ours) == {n for n, r in rows.items() if r.kernels is not None}
    for name, (zero, total) in ours.items():
        assert (zero, total) == (rows[name].zero_kernels, rows[name].kernels)
    assert ours["2.weight"][0] > 0      # 1×1 convs: a pruned weight is a pruned kernel


def test_trunk_relative_names_and_comparable_tensors_by_hand():
    from ticketlab.analysis.trunk import comparable, relative

    mask = {"backbone.body.layer1.0.conv1.weight": torch.ones(2, 2, 1, 1, dtype=torch.bool),
            "backbone.body.fc.weight": torch.ones(3, 2, dtype=torch.bool),       # a head, not trunk
            "backbone.fpn.inner.weight": torch.ones(2, 2, 1, 1, dtype=torch.bool)}
    assert list(relative(mask, "backbone.body.")) == ["layer1.0.conv1.weight"]
    assert relative(mask, None) == mask                                          # no ResNet: names as they are
    a = {"conv1.weight": torch.ones(4, 1, 3, 3), "layer1.0.conv1.weight": torch.ones(4, 4, 1, 1)}
    b = {"conv1.weight": torch.ones(4, 3, 3, 3), "layer1.0.conv1.weight": torch.ones(4, 4, 1, 1),
         "layer2.0.conv1.weight": torch.ones(1)}
    assert comparable(a, b) == (["layer1.0.conv1.weight"], ["conv1.weight"])


def test_stage_map_places_each_layer_side_by_side():
    from ticketlab.analysis.mask_curves import stage_map, stages

    first = torch.ones(2, 3, 3, 3, dtype=torch.bool)
    first[1, 2] = False                                  # kernel [1, 2] entirely pruned
    second = torch.ones(4, 2, 1, 1, dtype=torch.bool)
    second[3, 0] = False
    mask = {"layer2.0.conv1.weight": first, "layer2.0.conv2.weight": second,
            "layer1.0.conv1.weight": torch.zeros(1, 1, 1, 1, dtype=torch.bool), "layer2.fc.weight": torch.ones(2, 2)}
    assert stages(mask) == ["layer1", "layer2"]
    sm = stage_map(mask, "layer2")
    nan = np.nan
    expected = np.array([[0, 0, 0, nan, 0, 0],
                         [0, 0, 1, nan, 0, 0],
                         [nan, nan, nan, nan, 0, 0],
                         [nan, nan, nan, nan, 1, 0]])
    assert np.array_equal(sm.image, expected, equal_nan=True)
    assert sm.layers == [("layer2.0.conv1.weight", 0, 3), ("layer2.0.conv2.weight", 4, 6)]
    assert (sm.zero_kernels, sm.kernels) == (2, 14)
