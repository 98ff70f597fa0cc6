"""Top-1 retrieval accuracy (paper 002 App. A.2, Eq. 2): a hand-computed batch, a literal reference,
and the SimCLR / MoCo evaluation on fixed validation view pairs."""

import dataclasses
import math

import pytest
import torch

from ticketlab.config import load_config
from ticketlab.errors import TicketlabError
from ticketlab.lottery.experiment import build_experiment
from ticketlab.tasks.retrieval import retrieval_accuracy, retrieval_hits


def on_circle(degrees, norms=None):
    norms = norms or [1.0] * len(degrees)
    return torch.tensor([[r * math.cos(math.radians(a)), r * math.sin(math.radians(a))]
                         for a, r in zip(degrees, norms)])


def test_hand_built_batch_scores_four_of_six():
    # Views on the unit circle, so cosine similarity falls with the angle between them.
    # z1=0°, z'1=10°: each other's nearest (2 hits). z2=100°, z'2=140°: z2's nearest is z'2 (40° vs z3's
    # 70°): hit; z'2's nearest is z3 (30° vs z2's 40°): miss. z3=170°, z'3=230°: z3's nearest is z'2
    # (30°): miss; z'3's nearest is z3 (60° vs z'2's 90°): hit. 4 of the 6 views retrieve their partner.
    # The norms differ on purpose: a dot product instead of the cosine would pick other neighbours.
    z = on_circle([0, 100, 170], norms=[1.0, 5.0, 0.2])
    z_prime = on_circle([10, 140, 230], norms=[3.0, 0.5, 2.0])
    assert retrieval_hits(z, z_prime) == 4
    assert retrieval_accuracy(z, z_prime) == pytest.approx(4 / 6)
    assert retrieval_accuracy(z, z) == 1.0  # identical branches: each view's partner is itself, not excluded


def literal_eq2(z, z_prime):
    """Eq. 2 as written: for each z_i the set D_i of cosine similarities to every other view, the
    retrieval correct when its argmax is z'_i; likewise for z'_i."""
    n = len(z)
    views = [("z", i, z[i]) for i in range(n)] + [("z'", i, z_prime[i]) for i in range(n)]
    correct = 0
    for side, i, v in views:
        others = [(s, j, u) for s, j, u in views if (s, j) != (side, i)]
        sims = [torch.nn.functional.cosine_similarity(v, u, dim=0).item() for _, _, u in others]
        s, j, _ = others[max(range(len(sims)), key=sims.__getitem__)]
        correct += int(j == i and s != side)
    return correct / (2 * n)


def test_matches_the_literal_formula_on_random_batches():
    g = torch.Generator().manual_seed(0)
    for noise in (0.3, 1.0, 3.0):  # from mostly right to mostly wrong
        z = torch.randn(12, 6, generator=g)
        z_prime = z + noise * torch.randn(12, 6, generator=g)
        assert retrieval_accuracy(z, z_prime) == pytest.approx(literal_eq2(z, z_prime))


def test_bad_shapes_are_one_clear_error():
    with pytest.raises(TicketlabError, match="same shape"):
        retrieval_hits(torch.zeros(4, 3), torch.zeros(5, 3))
    with pytest.raises(TicketlabError, match="at least 2"):
        retrieval_hits(torch.zeros(1, 3), torch.zeros(1, 3))


def digits_experiment(config, *extra):
    return build_experiment(load_config(config, ["model.width=0.25", "ssl.retrieval_batch_size=100", *extra]))


def test_validation_pairs_are_fixed_and_differ_between_views():
    exp = digits_experiment("configs/digits_simclr.yaml")
    views = exp.data.val_views
    torch.manual_seed(1)
    (a1, a2), label = views[3]
    torch.manual_seed(2)
    (b1, b2), _ = views[3]
    assert torch.equal(a1, b1) and torch.equal(a2, b2) and not torch.equal(a1, a2)
    assert label == exp.data.val[3][1]
    (c1, _), _ = views[4]
    assert not torch.equal(c1, views[4][0][1])
    (w1, w2), _ = next(iter(torch.utils.data.DataLoader(views, batch_size=5, num_workers=2)))
    assert torch.equal(w1[3], a1) and torch.equal(w2[3], a2)  # the same pair in a loader worker


@torch.no_grad()
def test_moco_retrieves_with_the_query_and_the_key_encoder():
    exp = digits_experiment("configs/digits_moco.yaml", "ssl.moco_queue=64", "ssl.moco_retrieval=key")
    model, task = exp.model.eval(), exp.task
    loader = torch.utils.data.DataLoader(exp.data.val, batch_size=256)
    first = task.evaluate(model, loader, exp.device)
    assert first == task.evaluate(model, loader, exp.device)  # fixed pairs: the same number again
    assert 0.0 <= first["retrieval_accuracy"] <= 1.0
    # 450 validation digits at n = 100: four full batches of 200 views; the last 50 samples are left out
    hits = 0
    for batch in list(torch.utils.data.DataLoader(exp.data.val_views, batch_size=100))[:4]:
        (v1, v2), _ = batch
        hits += retrieval_hits(model(v1), model.keys(v2))
    assert first["retrieval_accuracy"] == hits / 800
    for p in model.key_encoder.projection.parameters():  # only the key branch changes
        p.mul_(-1.0)
    second = task.evaluate(model, loader, exp.device)
    assert second["retrieval_accuracy"] != first["retrieval_accuracy"]
    assert second["knn_accuracy"] == first["knn_accuracy"]  # kNN reads the query backbone only


@torch.no_grad()
def test_moco_query_retrieval_ignores_a_key_branch_that_sits_apart():
    """A key encoder whose embeddings point away from the queries (here exactly k = −q: its projection
    negated) makes the literal two-branch Eq. 2 zero — each view's nearest is a view of its own branch —
    whatever the query encoder has learned; `ssl.moco_retrieval: query` scores the query encoder alone."""
    exp = digits_experiment("configs/digits_moco.yaml", "ssl.moco_queue=64", "ssl.moco_retrieval=key",
                            "data.val_fraction=0.05", "ssl.retrieval_batch_size=30")  # 90 digits: 3 batches of 30
    model, task = exp.model.eval(), exp.task
    for p in model.key_encoder.projection[-1].parameters():
        p.mul_(-1.0)
    batches = list(torch.utils.data.DataLoader(exp.data.val_views, batch_size=30, drop_last=True))
    (v1, v2), _ = batches[0]
    torch.testing.assert_close(model.keys(v2), -model(v2))
    assert task.retrieval(model, exp.device)["retrieval_accuracy"] == 0.0
    hits = sum(retrieval_hits(model(a), model(b)) for (a, b), _ in batches)
    assert hits > 0
    task.cfg = dataclasses.replace(task.cfg, moco_retrieval="query")
    assert task.retrieval(model, exp.device)["retrieval_accuracy"] == hits / (60 * len(batches))
