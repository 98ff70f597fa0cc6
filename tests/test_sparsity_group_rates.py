"""Per-group pruning rates: after k levels each group keeps exactly the count that removing
round(rate_g × remaining) per level leaves, for every strategy; a named group is ranked by itself."""

import pytest
import torch

from ticketlab.config import load_config
from ticketlab.errors import TicketlabError
from ticketlab.lottery.experiment import build_experiment
from ticketlab.sparsity import full_mask, kept_count
from ticketlab.sparsity.group_rates import prune_by_groups

SHAPES = {"layer1.weight": (30, 49), "layer2.weight": (20, 30), "fc.weight": (10, 20)}
GROUPS = {"layer1.weight": "layer1", "layer2.weight": "layer2", "fc.weight": "fc"}
RATES = {"fc": 0.1}


def kept_after(n: int, rate: float, k: int) -> int:
    """n_{j+1} = n_j − round(rate × n_j), Python's round as torch.nn.utils.prune counts."""
    for _ in range(k):
        n -= round(rate * n)
    return n


def levels(strategy: str, k: int, rates=RATES, seed=0):
    g = torch.Generator().manual_seed(seed)
    mask = full_mask({n: torch.empty(s) for n, s in SHAPES.items()})
    for _ in range(k):
        weights = {n: torch.randn(s, generator=g) for n, s in SHAPES.items()}  # new trained weights per level
        mask = prune_by_groups(strategy, weights, mask, 0.2, rates, GROUPS, torch.Generator().manual_seed(7))
    return mask


@pytest.mark.parametrize("strategy", ["layerwise", "random"])
def test_each_tensor_keeps_its_groups_share(strategy):
    for k in (1, 4, 9):
        mask = levels(strategy, k)
        for name, shape in SHAPES.items():
            rate = RATES.get(GROUPS[name], 0.2)
            assert kept_count(mask[name]) == kept_after(shape[0] * shape[1], rate, k), (name, k)


def test_global_pools_named_groups_apart_and_the_rest_together():
    for k in (1, 4, 9):
        mask = levels("global", k)
        assert kept_count(mask["fc.weight"]) == kept_after(200, 0.1, k)
        rest = kept_count(mask["layer1.weight"]) + kept_count(mask["layer2.weight"])
        assert rest == kept_after(30 * 49 + 20 * 30, 0.2, k)


def test_global_ranks_a_named_group_within_itself():
    weights = {n: torch.full(s, 5.0) for n, s in SHAPES.items()}
    weights["fc.weight"] = torch.arange(200.0).reshape(10, 20) / 1000  # far smaller than the rest
    mask = prune_by_groups("global", weights, full_mask(weights), 0.2, {"fc": 0.1}, GROUPS)
    assert kept_count(mask["fc.weight"]) == 180 and not mask["fc.weight"].view(-1)[:20].any()
    # with one pool the tiny fc weights would all go first
    one_pool = prune_by_groups("global", weights, full_mask(weights), 0.2, {}, GROUPS)
    assert kept_count(one_pool["fc.weight"]) == 0


def test_without_rates_it_is_plain_pruning():
    from ticketlab.sparsity import prune

    g = torch.Generator().manual_seed(1)
    weights = {n: torch.randn(s, generator=g) for n, s in SHAPES.items()}
    for strategy in ("global", "layerwise"):
        a = prune_by_groups(strategy, weights, full_mask(weights), 0.2, {}, GROUPS)
        b = prune(strategy, weights, full_mask(weights), 0.2)
        assert all(torch.equal(a[n], b[n]) for n in SHAPES)


def test_imp_levels_follow_the_config_rates(tmp_path):
    from ticketlab.lottery.imp import run_imp
    from ticketlab.sparsity import load_mask

    cfg = load_config("configs/digits_lenet.yaml", ["prune.levels=3", "train.duration=2ep", "train.eval_every=2ep",
                                                    "prune.strategy=layerwise", "prune.rates={fc: 0.1}"])
    run_imp(cfg, tmp_path, log=lambda s: None)
    shapes = {"layer1.weight": (300, 64), "layer2.weight": (100, 300), "fc.weight": (10, 100)}
    mask = load_mask(tmp_path / "level_03" / "mask.safetensors", shapes)
    assert kept_count(mask["fc.weight"]) == kept_after(1000, 0.1, 3)
    assert kept_count(mask["layer2.weight"]) == kept_after(30000, 0.2, 3)


@pytest.mark.parametrize("rates,expected", [
    ("{fc: 1.5}", r"prune.rates.fc: expected a fraction in \(0, 1\), got 1.5"),
    ("{fcc: 0.1}", r"prune.rates: unknown module group 'fcc' \(did you mean 'fc'\?\)"),
    ("[0.1]", r"prune.rates: expected a mapping such as \{fc: 0.1\}"),
])
def test_bad_rates_are_named(rates, expected):
    with pytest.raises(TicketlabError, match=expected):
        build_experiment(load_config("configs/digits_lenet.yaml", [f"prune.rates={rates}"]))


def test_a_rate_for_a_group_outside_the_scope_is_refused():
    cfg = load_config("configs/digits_lenet.yaml", ["prune.rates={fc: 0.1}", "prune.exclude=[fc]"])
    with pytest.raises(TicketlabError, match="prune.rates: group 'fc' holds no weight of the pruning scope"):
        build_experiment(cfg)
