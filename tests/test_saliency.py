"""Pruning-at-init scores against their definitions, computed by hand on tiny networks, and the
masks they give (exact counts, ranking order, ties, inversion)."""

import pytest
import torch
from torch import nn

from ticketlab.config import load_config
from ticketlab.errors import TicketlabError
from ticketlab.sparsity import prune_global, prune_layerwise
from ticketlab.sparsity.ranking import exponential_keep, keep_top, level_keep, order_keys
from ticketlab.registry import STRATEGIES
from ticketlab.sparsity.pruning_at_init import get_strategy, prune_at_init
from ticketlab.sparsity.saliency import ScoreInputs, grasp_scores, snip_scores, synflow_scores



@pytest.fixture(autouse=True)
def float64_default():
    """The hand-computed references are compared at 1e-10: build the tiny nets in float64."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(before)


def _mse(net, batch):
    x, t = batch
    return 0.5 * ((net(x) - t) ** 2).sum()


def _two_layer(seed=0, d_in=3, d_hid=4, d_out=2):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d_in, d_hid, bias=False), nn.Linear(d_hid, d_out, bias=False))


def _batches(seed=1, n=5, d_in=3, d_out=2, count=2):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(n, d_in, generator=g), torch.randn(n, d_out, generator=g)) for _ in range(count)]


def _inputs(net, batches, names=("0.weight", "1.weight")):
    return ScoreInputs(model=net, names=list(names), loss_fn=_mse, batches=batches, example_input=batches[0][0])


def _full(net):
    return {n: torch.ones_like(p, dtype=torch.bool) for n, p in net.named_parameters()}


def test_snip_is_abs_gradient_times_weight_by_hand():
    net = _two_layer()
    batches = _batches()
    w1, w2 = net[0].weight.detach(), net[1].weight.detach()
    g1, g2 = torch.zeros_like(w1), torch.zeros_like(w2)
    for x, t in batches:  # L = ½‖W2 W1 x − t‖²: ∂L/∂W2 = r hᵀ, ∂L/∂W1 = W2ᵀ r xᵀ (rows = samples)
        h = x @ w1.T
        r = h @ w2.T - t
        g2 += r.T @ h
        g1 += (r @ w2).T @ x
    scores = snip_scores(_inputs(net, batches), _full(net))
    torch.testing.assert_close(scores["0.weight"], (g1 * w1).abs(), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(scores["1.weight"], (g2 * w2).abs(), rtol=1e-10, atol=1e-12)


def test_grasp_one_linear_layer_closed_form():
    torch.manual_seed(3)
    net = nn.Sequential(nn.Linear(3, 2, bias=False))
    batches = _batches(count=1)
    x, t = batches[0]
    w = net[0].weight.detach()
    g = (x @ w.T - t).T @ x              # ∂L/∂W = (W X − T) Xᵀ with samples as columns
    hg = g @ (x.T @ x)                   # H V = V X Xᵀ for L = ½‖W X − T‖²
    scores = grasp_scores(_inputs(net, batches, ["0.weight"]), {"0.weight": torch.ones_like(w, dtype=torch.bool)})
    torch.testing.assert_close(scores["0.weight"], -w * hg, rtol=1e-10, atol=1e-12)


def test_grasp_two_layers_against_the_full_hessian():
    net = _two_layer(seed=4)
    batches = _batches(seed=5)
    w1, w2 = net[0].weight.detach().clone(), net[1].weight.detach().clone()
    n1 = w1.numel()

    def loss(flat):
        a, b = flat[:n1].view_as(w1), flat[n1:].view_as(w2)
        return sum(0.5 * (((x @ a.T) @ b.T - t) ** 2).sum() for x, t in batches)

    flat = torch.cat([w1.reshape(-1), w2.reshape(-1)])
    hessian = torch.autograd.functional.hessian(loss, flat)
    grad = torch.autograd.functional.jacobian(loss, flat)
    expected = -flat * (hessian @ grad)
    scores = grasp_scores(_inputs(net, batches), _full(net))
    got = torch.cat([scores["0.weight"].reshape(-1), scores["1.weight"].reshape(-1)])
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-12)


def test_synflow_two_layer_linear_closed_form():
    net = _two_layer(seed=6)
    a1, a2 = net[0].weight.detach().abs(), net[1].weight.detach().abs()
    # R = 1ᵀ|W2||W1|1: ∂R/∂|W1|_ij = Σ_k |W2|_ki, ∂R/∂|W2|_ki = Σ_j |W1|_ij
    scores = synflow_scores(_inputs(net, _batches()), _full(net))
    torch.testing.assert_close(scores["0.weight"], a1 * a2.sum(0)[:, None], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(scores["1.weight"], a2 * a1.sum(1)[None, :], rtol=1e-10, atol=1e-12)


def test_synflow_uses_batchnorm_running_statistics_in_eval_mode_and_leaves_the_model_alone():
    torch.manual_seed(7)
    net = nn.Sequential(nn.Linear(3, 4, bias=False), nn.BatchNorm1d(4), nn.Linear(4, 2, bias=False))
    bn = net[1]
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([0.5, -2.0, 1.5, 1.0]))
        bn.running_var.copy_(torch.tensor([4.0, 0.25, 1.0, 9.0]))
        bn.running_mean.copy_(torch.tensor([1.0, -1.0, 0.0, 2.0]))
    net.train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    scores = synflow_scores(_inputs(net, _batches(), ["0.weight", "2.weight"]), _full(net))
    a = bn.weight.detach().abs() / torch.sqrt(bn.running_var + bn.eps)  # the BN scale seen by R
    expected = net[0].weight.detach().abs() * (a * net[2].weight.detach().abs().sum(0))[:, None]
    torch.testing.assert_close(scores["0.weight"], expected, rtol=1e-10, atol=1e-12)
    assert net.training and all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert all(p.grad is None for p in net.parameters())


def test_scores_are_of_the_masked_network():
    net = _two_layer(seed=8)
    mask = _full(net)
    mask["0.weight"][1] = False  # hidden unit 1 gets no input: its outgoing weights carry no flow
    scores = synflow_scores(_inputs(net, _batches()), mask)
    assert torch.all(scores["0.weight"][1] == 0) and torch.all(scores["1.weight"][:, 1] == 0)
    assert torch.all(snip_scores(_inputs(net, _batches()), mask)["0.weight"][1] == 0)


def test_order_keys_follow_numeric_order_including_signs_and_zero():
    values = torch.tensor([-3.5, -1e-30, -0.0, 0.0, 1e-30, 2.0, float("inf"), -float("inf")])
    keys = order_keys(values)
    assert torch.equal(torch.argsort(keys, stable=True), torch.tensor([7, 0, 1, 2, 3, 4, 5, 6]))
    assert torch.equal(torch.argsort(order_keys(values, keep_high=False), stable=True),
                       torch.tensor([6, 5, 4, 3, 2, 1, 0, 7]))


@pytest.mark.parametrize("keep_high", [True, False])
def test_keep_top_against_sorting_with_ties_by_name_then_index(keep_high):
    g = torch.Generator().manual_seed(9)
    scores = {"b": torch.randint(-3, 4, (4, 5), generator=g).double(), "a": torch.randint(-3, 4, (7,), generator=g).double()}
    mask = {"b": torch.rand(4, 5, generator=g) > 0.2, "a": torch.rand(7, generator=g) > 0.2}
    entries = [(float(scores[n].reshape(-1)[i]), n, i) for n in sorted(mask)
               for i in range(mask[n].numel()) if mask[n].reshape(-1)[i]]
    keep = len(entries) // 2
    order = sorted(entries, key=lambda e: ((e[0] if keep_high else -e[0]), e[1], e[2]))  # removal order
    removed = {(n, i) for _, n, i in order[: len(entries) - keep]}
    out = keep_top(scores, mask, keep, keep_high=keep_high)
    assert list(out) == ["b", "a"] and sum(int(m.sum()) for m in out.values()) == keep
    for n in mask:
        for i in range(mask[n].numel()):
            want = bool(mask[n].reshape(-1)[i]) and (n, i) not in removed
            assert bool(out[n].reshape(-1)[i]) == want


def test_level_keep_matches_imp_counts_global_and_layerwise():
    g = torch.Generator().manual_seed(10)
    weights = {"x": torch.randn(33, 7, generator=g), "y": torch.randn(101, generator=g)}
    mask_g = mask_l = {n: torch.ones_like(w, dtype=torch.bool) for n, w in weights.items()}
    for level in range(1, 6):
        mask_g = prune_global(weights, mask_g, 0.3)
        mask_l = prune_layerwise(weights, mask_l, 0.3)
        full = {n: torch.ones_like(w, dtype=torch.bool) for n, w in weights.items()}
        assert level_keep(full, 0.3, level, layerwise=False) == sum(int(m.sum()) for m in mask_g.values())
        assert level_keep(full, 0.3, level, layerwise=True) == {n: int(m.sum()) for n, m in mask_l.items()}


def test_exponential_schedule_ends_on_the_target():
    counts = [exponential_keep(1000, 10, j, 100) for j in range(1, 101)]
    assert counts[-1] == 10 and counts == sorted(counts, reverse=True)
    assert counts[49] == round(1000 * 0.01 ** 0.5)


@pytest.mark.parametrize("name", ["snip", "grasp_layerwise", "synflow", "synflow_layerwise"])
def test_prune_at_init_keeps_exactly_the_requested_counts(name):
    net = _two_layer(seed=11, d_in=6, d_hid=9, d_out=3)
    strategy = get_strategy(name)
    inputs = _inputs(net, _batches(d_in=6, d_out=3))
    mask = _full(net)
    keep = level_keep(mask, 0.2, 4, layerwise=strategy.layerwise)
    out = prune_at_init(strategy, inputs, mask, keep, iterations=7)
    if strategy.layerwise:
        assert {n: int(m.sum()) for n, m in out.items()} == keep
    else:
        assert sum(int(m.sum()) for m in out.values()) == keep


def test_synflow_iterations_rescore_and_one_iteration_is_one_shot():
    net = _two_layer(seed=12, d_in=8, d_hid=8, d_out=8)
    inputs, mask, strategy = _inputs(net, _batches(d_in=8, d_out=8)), _full(net), get_strategy("synflow")
    rounds = []
    out = prune_at_init(strategy, inputs, mask, 13, iterations=5, on_round=lambda j, m: rounds.append(
        sum(int(x.sum()) for x in m.values())))
    assert rounds == [exponential_keep(128, 13, j, 5) for j in range(1, 6)]
    one = prune_at_init(strategy, inputs, mask, 13, iterations=1)
    assert all(torch.equal(a, b) for a, b in zip(one.values(),
               keep_top(synflow_scores(inputs, mask), mask, 13).values()))
    assert sum(int(m.sum()) for m in out.values()) == 13


def test_invert_keeps_the_lowest_scored_and_grasp_keeps_the_lowest_s():
    net = _two_layer(seed=13)
    inputs, mask = _inputs(net, _batches()), _full(net)
    snip = snip_scores(inputs, mask)
    inverted = prune_at_init(get_strategy("snip"), inputs, mask, 5, invert=True)
    assert all(torch.equal(a, b) for a, b in zip(inverted.values(), keep_top(snip, mask, 5, keep_high=False).values()))
    grasp = prune_at_init(get_strategy("grasp"), inputs, mask, 5)
    s = grasp_scores(inputs, mask)
    kept = torch.cat([s[n][grasp[n]] for n in s])
    gone = torch.cat([s[n][~grasp[n]] for n in s])
    assert kept.max() <= gone.min()


def test_strategies_are_registered_and_checked_by_the_config():
    at_init = {n for n, st in STRATEGIES.items() if st.at_init}
    assert at_init == {"snip", "snip_layerwise", "grasp", "grasp_layerwise", "synflow", "synflow_layerwise"}
    assert load_config(None, ["prune.strategy=grasp_layerwise"]).prune.strategy == "grasp_layerwise"
    with pytest.raises(TicketlabError, match="did you mean 'snip'"):
        load_config(None, ["prune.strategy=snipp"])
