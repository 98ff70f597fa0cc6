"""MaskEnforcer keeps pruned weights exactly 0 on a plain model, for every optimizer setting."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn.utils import prune as tprune

from ticketlab.errors import TicketlabError
from ticketlab.sparsity import MaskEnforcer, full_mask, prune_global

OPTIMIZERS = {
    "sgd_momentum_wd": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=1e-2),
    "sgd_nesterov": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
    "adam_l2": lambda p: torch.optim.Adam(p, lr=1e-2, weight_decay=1e-2),
    "adam_amsgrad": lambda p: torch.optim.Adam(p, lr=1e-2, amsgrad=True),
    "adamw": lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=0.1),
    "rmsprop_full_path": lambda p: torch.optim.RMSprop(p, lr=1e-3, momentum=0.5),
}


def _net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 6, 3), nn.BatchNorm2d(6), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 6 * 6, 5))


def _scope(model):
    return {n: p.detach() for n, p in model.named_parameters() if n in ("0.weight", "4.weight")}


def _batch(i):
    g = torch.Generator().manual_seed(100 + i)
    return torch.randn(4, 3, 8, 8, generator=g), torch.randint(0, 5, (4,), generator=g)


def _train_step(model, opt, i, enf=None, mask_grads=True):
    x, y = _batch(i)
    opt.zero_grad(set_to_none=True)
    nn.functional.cross_entropy(model(x), y).backward()
    if enf is not None and mask_grads:
        enf.mask_grads()
    opt.step()
    if enf is not None:
        enf.after_step(opt)


def _assert_pruned_zero(model, mask, opt=None):
    params = dict(model.named_parameters())
    for n, m in mask.items():
        assert bool((params[n].detach()[~m] == 0).all()), n
        if opt is not None:
            for k, v in opt.state[params[n]].items():
                if torch.is_tensor(v) and v.shape == m.shape:
                    assert bool((v[~m] == 0).all()), (n, k)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
@pytest.mark.parametrize("mask_grads", [True, False])
def test_pruned_weights_stay_exactly_zero_from_a_dense_rewound_state(name, mask_grads):
    model = _net()
    opt = OPTIMIZERS[name](model.parameters())
    for i in range(3):  # dense training: the optimizer state is non-zero everywhere
        _train_step(model, opt, i)
    mask = prune_global(_scope(model), full_mask(_scope(model)), 0.7)
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    enf = MaskEnforcer(model, mask)
    enf.zero_weights()
    _assert_pruned_zero(model, mask)
    for i in range(3, 23):
        _train_step(model, opt, i, enf, mask_grads)
        _assert_pruned_zero(model, mask, opt)
    params = dict(model.named_parameters())
    for n, m in mask.items():
        assert not torch.equal(params[n].detach()[m], start[n][m])  # kept weights do train


def test_external_write_between_steps_is_caught():
    model = _net()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    dense = copy.deepcopy(model.state_dict())
    mask = prune_global(_scope(model), full_mask(_scope(model)), 0.8)
    enf = MaskEnforcer(model, mask)
    enf.zero_weights()
    for i in range(3):
        _train_step(model, opt, i, enf)
    model.load_state_dict(dense)  # a rewind that forgot zero_weights()
    for i in range(3, 5):
        _train_step(model, opt, i, enf)
        _assert_pruned_zero(model, mask, opt)
    opt2 = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    opt2.load_state_dict(opt.state_dict())  # new state tensors: must be cleaned again
    with torch.no_grad():
        for st in opt2.state.values():
            st["momentum_buffer"].add_(1.0)
    _train_step(model, opt2, 9, enf)
    _assert_pruned_zero(model, mask, opt2)


def test_matches_torch_prune_reparametrisation_on_kept_weights():
    ours, ref = _net(1), _net(1)
    mask = prune_global(_scope(ours), full_mask(_scope(ours)), 0.6)
    enf = MaskEnforcer(ours, mask)
    enf.zero_weights()
    for n, m in mask.items():
        tprune.custom_from_mask(ref.get_submodule(n.rsplit(".", 1)[0]), "weight", m)
    o1 = torch.optim.SGD(ours.parameters(), lr=0.05, momentum=0.9)
    o2 = torch.optim.SGD(ref.parameters(), lr=0.05, momentum=0.9)
    for i in range(6):
        _train_step(ours, o1, i, enf)
        _train_step(ref, o2, i)
    for n in mask:
        mod = ref.get_submodule(n.rsplit(".", 1)[0])
        current = mod.weight_orig.detach() * mod.weight_mask  # mod.weight is only refreshed by forward
        torch.testing.assert_close(dict(ours.named_parameters())[n].detach(), current, rtol=0, atol=0)


def test_model_stays_plain_and_deepcopy_rebinds():
    model = _net()
    keys = list(model.state_dict())
    mask = prune_global(_scope(model), full_mask(_scope(model)), 0.5)
    enf = MaskEnforcer(model, mask)
    enf.zero_weights()
    clone = copy.deepcopy(model)
    assert list(clone.state_dict()) == keys and list(model.state_dict()) == keys
    assert not any(k.endswith(("_orig", "_mask")) for k in keys)
    enf2 = enf.rebind(clone)
    opt = torch.optim.Adam(clone.parameters(), lr=1e-2)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for i in range(3):
        _train_step(clone, opt, i, enf2)
    _assert_pruned_zero(clone, mask, opt)
    assert all(torch.equal(p.detach(), before[n]) for n, p in model.named_parameters())  # original untouched


def test_bad_masks_are_reported():
    model = _net()
    with pytest.raises(TicketlabError, match="nope.weight"):
        MaskEnforcer(model, {"nope.weight": torch.ones(3, dtype=torch.bool)})
    with pytest.raises(TicketlabError, match="0.weight"):
        MaskEnforcer(model, {"0.weight": torch.ones(3, dtype=torch.bool)})


def test_steady_state_after_step_skips_provably_redundant_work():
    """With masked grads and a clean state, SGD/Adam cannot move pruned weights: after_step must not
    rewrite the weights (checked via version counters), yet they stay exactly 0."""
    model = _net()
    mask = prune_global(_scope(model), full_mask(_scope(model)), 0.7)
    enf = MaskEnforcer(model, mask)
    enf.zero_weights()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3)
    params = [dict(model.named_parameters())[n] for n in mask]
    for i in range(5):
        x, y = _batch(i)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        enf.mask_grads()
        opt.step()
        versions = [p._version for p in params]
        enf.after_step(opt)
        rewritten = [p._version for p in params] != versions
        assert rewritten == (i == 0)  # first step: state is new, full path; then skipped
        _assert_pruned_zero(model, mask, opt)
