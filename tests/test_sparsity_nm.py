"""N:M masks: exactly N kept in every group of M consecutive weights of a row, the largest ones; the
controls keep each group's count; tensors whose rows are not a multiple of M are left alone."""

import pytest
import torch

from ticketlab.config import load_config
from ticketlab.errors import TicketlabError
from ticketlab.sparsity.nm import complement_nm, covered, group_counts, nm_mask, perturb_nm, random_nm_like


def dense(weights):
    return {n: torch.ones_like(w, dtype=torch.bool) for n, w in weights.items()}


def test_hand_computed_two_of_four():
    w = torch.tensor([[0.1, -3.0, 2.0, 0.5, 1.0, 1.0, -1.0, 0.0]])
    got = nm_mask({"w": w}, dense({"w": w}), 2, 4)["w"]
    # group 1 keeps -3 and 2; group 2 has a three-way tie at |1|: the two lowest indices win
    assert got.tolist() == [[False, True, True, False, True, True, False, False]]


def test_only_alive_weights_compete_and_pruned_ones_never_return():
    w = torch.tensor([[5.0, 4.0, 3.0, 2.0]])
    alive = torch.tensor([[False, True, True, True]])
    assert nm_mask({"w": w}, {"w": alive}, 2, 4)["w"].tolist() == [[False, True, True, False]]
    one = torch.tensor([[False, False, False, True]])
    assert nm_mask({"w": w}, {"w": one}, 2, 4)["w"].tolist() == [[False, False, False, True]]


def test_exactly_n_in_every_group_of_a_conv_and_a_linear():
    g = torch.Generator().manual_seed(0)
    weights = {"conv": torch.randn(8, 4, 3, 3, generator=g), "fc": torch.randn(10, 16, generator=g),
               "stem": torch.randn(8, 3, 7, 7, generator=g)}  # 147 per row: not a multiple of 4
    mask = nm_mask(weights, dense(weights), 2, 4)
    for name in ("conv", "fc"):
        assert (group_counts(mask[name], 4) == 2).all()
        # the kept ones are the two largest of their group (row-major groups of the flattened row)
        mags = weights[name].reshape(-1, 4).abs()
        kept_min = torch.where(mask[name].reshape(-1, 4), mags, torch.inf).min(1).values
        dropped_max = torch.where(mask[name].reshape(-1, 4), -torch.inf, mags).max(1).values
        assert (kept_min >= dropped_max).all()
    assert mask["stem"].all() and not covered((8, 3, 7, 7), 4)
    again = nm_mask(weights, mask, 2, 4)  # idempotent: IMP stops at N:M
    assert all(torch.equal(again[n], mask[n]) for n in mask)


def test_controls_keep_every_groups_count():
    g = torch.Generator().manual_seed(1)
    weights = {"a": torch.randn(6, 8, generator=g), "b": torch.randn(4, 4, 2, 2, generator=g)}
    mask = nm_mask(weights, dense(weights), 2, 4)
    shuffled = random_nm_like(mask, 4, torch.Generator().manual_seed(0))
    flipped = perturb_nm(mask, 0.5, 4, torch.Generator().manual_seed(0))
    comp = complement_nm(mask, 4)
    for n in mask:
        assert (group_counts(shuffled[n], 4) == 2).all()
        assert (group_counts(flipped[n], 4) == 2).all()
        assert (group_counts(comp[n], 4) == 2).all() and not (comp[n] & mask[n]).any()
    moved = sum(int((flipped[n] & ~mask[n]).sum()) for n in mask)
    assert moved == sum(round(0.5 * int(mask[n].sum())) for n in mask)  # 2:4 always has room to swap
    assert any(not torch.equal(shuffled[n], mask[n]) for n in mask)
    assert torch.equal(random_nm_like(mask, 4, torch.Generator().manual_seed(0))["a"], shuffled["a"])


def test_complement_of_one_of_four_is_three_of_four():
    w = torch.randn(3, 8, generator=torch.Generator().manual_seed(2))
    mask = nm_mask({"w": w}, dense({"w": w}), 1, 4)
    assert (group_counts(complement_nm(mask, 4)["w"], 4) == 3).all()


def test_inverted_keeps_the_smallest():
    w = torch.tensor([[4.0, -1.0, 3.0, 2.0]])
    assert nm_mask({"w": w}, dense({"w": w}), 2, 4, keep_high=False)["w"].tolist() == [[False, True, False, True]]


@pytest.mark.parametrize("value", ["4:2", "2:2", "0:4", "2-4", "structured"])
def test_bad_granularity_is_one_clear_line(value):
    with pytest.raises(TicketlabError, match="prune.granularity: expected weight, channel or N:M"):
        load_config(None, [f"prune.granularity={value}"])


def test_weight_only_settings_are_refused_with_structure():
    with pytest.raises(TicketlabError, match="prune.rates: applies to prune.granularity weight only"):
        load_config(None, ["prune.granularity=channel", "prune.rates={fc: 0.1}"])
    with pytest.raises(TicketlabError, match="prune.strategy: snip scores single weights"):
        load_config(None, ["prune.granularity=2:4", "prune.strategy=snip"])
    assert load_config(None, ["prune.granularity=2:4"]).prune.granularity == "2:4"
