"""Pruning strategies against torch.nn.utils.prune and against a plain stable-sort reference."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils import prune as tprune

from ticketlab.errors import TicketlabError
from ticketlab.sparsity import (
    complement,
    full_mask,
    perturb,
    prune,
    prune_global,
    prune_layerwise,
    prune_random,
    random_mask_like,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _modules(dtype=torch.float32, seed=0):
    """Tensors of different sizes and scales (a global threshold must cut them unevenly)."""
    g = torch.Generator().manual_seed(seed)
    mods = [nn.Conv2d(3, 8, 3), nn.Linear(37, 23), nn.Conv1d(5, 6, 5), nn.Linear(301, 7)]
    with torch.no_grad():
        for i, m in enumerate(mods):
            m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (0.1 * (i + 1)))
    return [m.to(dtype) for m in mods]


def _weights(mods):
    return {f"m{i}.weight": m.weight.detach().clone() for i, m in enumerate(mods)}


def _kept(mask):
    return sum(int(m.sum()) for m in mask.values())


def reference_global(weights, mask, k):
    """Independent reference: stable sort of alive |w| in (name, flat index) order; remove first k."""
    names = sorted(mask)
    vals, owners = [], []
    for n in names:
        idx = mask[n].reshape(-1).nonzero().squeeze(1)
        vals.append(weights[n].reshape(-1)[idx].abs().double())
        owners += [(n, int(i)) for i in idx]
    order = torch.sort(torch.cat(vals), stable=True).indices[:k]
    out = {n: m.clone() for n, m in mask.items()}
    for j in order.tolist():
        n, i = owners[j]
        out[n].view(-1)[i] = False
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_global_matches_torch_global_unstructured_over_levels(dtype):
    mods = _modules(dtype)
    w = _weights(mods)
    # m3 starts heavily pruned (95%), as a tensor many levels deep would be
    g = torch.Generator().manual_seed(1)
    start = full_mask(w)
    start["m3.weight"] = torch.rand(w["m3.weight"].shape, generator=g) < 0.05
    for i, m in enumerate(mods):
        tprune.custom_from_mask(m, "weight", start[f"m{i}.weight"])
    mask = start
    params = [(m, "weight") for m in mods]
    for level in range(7):
        tprune.global_unstructured(params, pruning_method=tprune.L1Unstructured, amount=0.2)
        mask = prune_global(w, mask, 0.2)
        for i, m in enumerate(mods):
            assert torch.equal(m.weight_mask.bool(), mask[f"m{i}.weight"]), (level, i)
    assert _kept(mask) < 0.25 * sum(v.numel() for v in w.values())


def test_global_one_shot_high_rate_matches_torch():
    mods = _modules(seed=3)
    w = _weights(mods)
    tprune.global_unstructured([(m, "weight") for m in mods], pruning_method=tprune.L1Unstructured, amount=0.93)
    mask = prune_global(w, full_mask(w), 0.93)
    for i, m in enumerate(mods):
        assert torch.equal(m.weight_mask.bool(), mask[f"m{i}.weight"])


def test_layerwise_matches_torch_l1_unstructured_per_tensor():
    mods = _modules(seed=5)
    w = _weights(mods)
    mask = full_mask(w)
    for level in range(5):
        for m in mods:
            tprune.l1_unstructured(m, "weight", amount=0.3)
        mask = prune_layerwise(w, mask, 0.3)
        for i, m in enumerate(mods):
            assert torch.equal(m.weight_mask.bool(), mask[f"m{i}.weight"]), (level, i)


def test_ties_follow_name_then_flat_index_and_ignore_dict_order():
    g = torch.Generator().manual_seed(0)
    # many exact ties, exact zeros among the alive weights, negative zeros
    w = {n: torch.randint(-3, 4, s, generator=g).float() for n, s in
         [("b.weight", (5, 7)), ("a.weight", (4, 3, 3)), ("c.weight", (40,))]}
    w["a.weight"][0, 0, 0] = -0.0
    mask = {n: torch.rand(t.shape, generator=g) < 0.8 for n, t in w.items()}
    for rate in [0.1, 0.33, 0.5, 0.77]:
        k = round(rate * _kept(mask))
        got = prune_global(w, mask, rate)
        ref = reference_global(w, mask, k)
        for n in w:
            assert torch.equal(got[n], ref[n]), (rate, n)
        reordered = {n: mask[n] for n in reversed(list(mask))}
        got2 = prune_global(w, reordered, rate)
        assert list(got2) == list(reordered)
        assert all(torch.equal(got2[n], got[n]) for n in w)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_matches_reference(dtype):
    g = torch.Generator().manual_seed(2)
    w = {f"t{i}": (torch.randn(s, generator=g) * 0.05).to(dtype) for i, s in enumerate([(64, 9), (300,), (7, 7)])}
    mask = full_mask(w)
    for _ in range(4):
        k = round(0.25 * _kept(mask))
        ref = reference_global(w, mask, k)
        mask = prune_global(w, mask, 0.25)
        assert all(torch.equal(mask[n], ref[n]) for n in w)


def test_mixed_dtypes_compare_magnitudes_exactly():
    w = {"a": torch.tensor([1e-3, 2.0, 5e-4, 3.0], dtype=torch.float16).float().half(),
         "b": torch.tensor([1e-3 + 1e-9, 1e-4, 10.0], dtype=torch.float64)}
    mask = prune_global(w, full_mask(w), 3 / 7)
    ref = reference_global(w, full_mask(w), 3)
    assert all(torch.equal(mask[n], ref[n]) for n in w)


def test_exact_counts_and_python_rounding():
    g = torch.Generator().manual_seed(0)
    w = {"x": torch.randn(10, generator=g), "y": torch.randn(6, generator=g)}
    m = full_mask(w)
    # 0.25 * 16 = 4 ; layerwise 0.25*10 = 2.5 -> 2 (half to even), 0.25*6 = 1.5 -> 2
    assert _kept(prune_global(w, m, 0.25)) == 12
    lw = prune_layerwise(w, m, 0.25)
    assert int(lw["x"].sum()) == 8 and int(lw["y"].sum()) == 4
    for rate in [0.0, 0.01, 0.2, 0.5, 0.99, 1.0]:
        for strategy in ["global", "layerwise", "random"]:
            out = prune(strategy, w, m, rate, torch.Generator().manual_seed(0))
            if strategy == "global":
                assert _kept(out) == 16 - round(rate * 16)
            else:
                for n in w:
                    assert int(out[n].sum()) == w[n].numel() - round(rate * w[n].numel())


def test_pruned_weights_never_return_and_their_values_do_not_matter():
    mods = _modules(seed=7)
    w = _weights(mods)
    mask = prune_global(w, full_mask(w), 0.5)
    w2 = {n: torch.where(mask[n], t, torch.full_like(t, 1e-12)) for n, t in w.items()}  # tiny pruned values
    w3 = {n: torch.where(mask[n], t, torch.full_like(t, 1e6)) for n, t in w.items()}  # huge pruned values
    a, b = prune_global(w2, mask, 0.4), prune_global(w3, mask, 0.4)
    for n in w:
        assert torch.equal(a[n], b[n])
        assert not bool((a[n] & ~mask[n]).any())


def test_inputs_untouched_and_outputs_fresh():
    w = _weights(_modules())
    mask = full_mask(w)
    before = {n: m.clone() for n, m in mask.items()}
    out = prune_global(w, mask, 0.0)
    out["m0.weight"][:] = False
    assert all(torch.equal(mask[n], before[n]) for n in mask)


def test_rate_one_and_bad_inputs():
    w = _weights(_modules())
    assert _kept(prune_global(w, full_mask(w), 1.0)) == 0
    for bad in [-0.1, 1.5, float("nan"), True]:
        with pytest.raises(TicketlabError, match="rate"):
            prune_global(w, full_mask(w), bad)
    with pytest.raises(TicketlabError, match="strategy"):
        prune("magnitude", w, full_mask(w), 0.2)
    with pytest.raises(TicketlabError, match="Generator"):
        prune("random", w, full_mask(w), 0.2)
    bad_shape = full_mask(w)
    bad_shape["m0.weight"] = torch.ones(3, dtype=torch.bool)
    with pytest.raises(TicketlabError, match="m0.weight"):
        prune_global(w, bad_shape, 0.2)


def test_nan_in_kept_weights_is_an_error_naming_the_tensor():
    w = _weights(_modules())
    w["m2.weight"][0, 0, 0] = float("nan")
    with pytest.raises(TicketlabError, match="m2.weight"):
        prune_global(w, full_mask(w), 0.2)
    mask = full_mask(w)
    mask["m2.weight"][0, 0, 0] = False  # a NaN at a pruned position is irrelevant
    prune_global(w, mask, 0.2)


def test_random_is_reproducible_uniform_per_tensor_and_subset():
    w = _weights(_modules())
    mask = prune_global(w, full_mask(w), 0.5)
    a = prune_random(mask, 0.3, torch.Generator().manual_seed(4))
    b = prune_random(mask, 0.3, torch.Generator().manual_seed(4))
    c = prune_random(mask, 0.3, torch.Generator().manual_seed(5))
    assert all(torch.equal(a[n], b[n]) for n in mask)
    assert any(not torch.equal(a[n], c[n]) for n in mask)
    for n in mask:
        alive = int(mask[n].sum())
        assert int(a[n].sum()) == alive - round(0.3 * alive)
        assert not bool((a[n] & ~mask[n]).any())


def test_random_mask_like_keeps_per_tensor_counts():
    w = _weights(_modules())
    mask = prune_global(w, full_mask(w), 0.7)
    a = random_mask_like(mask, torch.Generator().manual_seed(0))
    b = random_mask_like(mask, torch.Generator().manual_seed(0))
    for n in mask:
        assert a[n].dtype == torch.bool and a[n].shape == mask[n].shape
        assert int(a[n].sum()) == int(mask[n].sum())
        assert torch.equal(a[n], b[n])
    assert any(not torch.equal(a[n], mask[n]) for n in mask)


def test_complement():
    w = _weights(_modules())
    mask = prune_global(w, full_mask(w), 0.6)
    c = complement(mask)
    for n in mask:
        assert not bool((c[n] & mask[n]).any()) and bool((c[n] | mask[n]).all())


def test_perturb_flips_equal_numbers_and_keeps_sparsity():
    w = _weights(_modules())
    mask = prune_global(w, full_mask(w), 0.6)
    p = perturb(mask, 0.1, torch.Generator().manual_seed(0))
    for n in mask:
        kept = int(mask[n].sum())
        f = min(round(0.1 * kept), mask[n].numel() - kept)
        assert int(p[n].sum()) == kept
        assert int((mask[n] & ~p[n]).sum()) == f  # ones turned off
        assert int((~mask[n] & p[n]).sum()) == f  # zeros turned on
    q = perturb(mask, 0.1, torch.Generator().manual_seed(0))
    assert all(torch.equal(p[n], q[n]) for n in mask)
    dense = full_mask(w)  # nothing pruned: nothing can be flipped on, so nothing is flipped
    assert all(torch.equal(perturb(dense, 0.5, torch.Generator())[n], dense[n]) for n in dense)


@pytest.mark.parametrize("device", DEVICES)
def test_tensors_stay_on_their_device(device):
    w = {n: t.to(device) for n, t in _weights(_modules()).items()}
    mask = prune_global(w, full_mask(w), 0.5)
    mask = prune_layerwise(w, mask, 0.2)
    gen = torch.Generator(device=device).manual_seed(0)
    for out in [mask, prune_random(mask, 0.2, gen), random_mask_like(mask, gen), perturb(mask, 0.1, gen)]:
        assert all(t.device.type == device for t in out.values())
