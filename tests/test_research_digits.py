"""LR rewinding, pruning-at-init levels, instability analysis and the invert / shuffle controls, end to
end on the real digits data (small: 1 epoch per level)."""

import csv
import json
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from ticketlab.analysis.report import write_report
from ticketlab.config import load_config
from ticketlab.errors import TicketlabError
from ticketlab.lottery.branches import run_branch
from ticketlab.lottery.imp import run_imp
from ticketlab.lottery.instability import barrier, interpolate, recompute_batchnorm
from ticketlab.sparsity import load_mask
from ticketlab.sparsity.ranking import level_keep

FAST = ["train.duration=1ep", "train.eval_every=1ep", "train.checkpoint_every=1ep", "prune.levels=2",
        "train.tensorboard=false"]


def run(tmp_path_factory, name, *extra):
    out = tmp_path_factory.mktemp(name) / "run"
    run_imp(load_config("configs/digits_lenet.yaml", FAST + list(extra)), out, log=lambda s: None)
    return out


@pytest.fixture(scope="module")
def weights_run(tmp_path_factory):
    return run(tmp_path_factory, "weights")


@pytest.fixture(scope="module")
def lr_run(tmp_path_factory):
    return run(tmp_path_factory, "lr", "prune.rewind_mode=lr")


@pytest.fixture(scope="module")
def snip_run(tmp_path_factory):
    return run(tmp_path_factory, "snip", "prune.strategy=snip")


def _masked(state, mask):
    return {n: state[n] * mask[n] for n in mask}


def _kept(mask):
    return sum(int(m.sum()) for m in mask.values())


def test_lr_rewinding_restarts_each_level_from_the_previous_final_weights(lr_run, weights_run):
    for level in (1, 2):
        mask = load_mask(lr_run / f"level_{level:02d}" / "mask.safetensors")
        start = load_file(str(lr_run / f"level_{level:02d}" / "rewind.safetensors"))
        prev = load_file(str(lr_run / f"level_{level - 1:02d}" / "final.safetensors"))
        for n, m in _masked(prev, mask).items():
            assert torch.equal(start[n], m)
    # weight rewinding restarts from init ⊙ mask
    mask = load_mask(weights_run / "level_02" / "mask.safetensors")
    start = load_file(str(weights_run / "level_02" / "rewind.safetensors"))
    init = load_file(str(weights_run / "level_00" / "rewind.safetensors"))
    assert all(torch.equal(start[n], v) for n, v in _masked(init, mask).items())
    with pytest.raises(TicketlabError, match="rewind_optimizer"):
        load_config("configs/digits_lenet.yaml", ["prune.rewind_mode=lr", "prune.rewind_optimizer=true"])


def test_pruning_at_init_levels_have_imp_counts_and_start_at_init(tmp_path_factory, weights_run, snip_run):
    snip = snip_run
    full = load_mask(snip / "level_00" / "mask.safetensors")
    init = load_file(str(snip / "level_00" / "rewind.safetensors"))
    masks = [load_mask(snip / f"level_{k:02d}" / "mask.safetensors") for k in (1, 2)]
    imp = [load_mask(weights_run / f"level_{k:02d}" / "mask.safetensors") for k in (1, 2)]
    for k, (mask, imp_mask) in enumerate(zip(masks, imp), start=1):
        assert _kept(mask) == level_keep(full, 0.2, k, layerwise=False) == _kept(imp_mask)
        start = load_file(str(snip / f"level_{k:02d}" / "rewind.safetensors"))
        assert all(torch.equal(start[n], v) for n, v in _masked(init, mask).items())
    # one-shot scores of the same init: the sparser level keeps a subset of the denser one
    assert all(bool((masks[1][n] <= masks[0][n]).all()) for n in full)
    assert any(not torch.equal(masks[1][n], imp[1][n]) for n in full)
    layerwise = run(tmp_path_factory, "synflow", "prune.strategy=synflow_layerwise", "prune.levels=1",
                    "prune.synflow_iterations=10")
    mask = load_mask(layerwise / "level_01" / "mask.safetensors")
    assert {n: int(m.sum()) for n, m in mask.items()} == level_keep(full, 0.2, 1, layerwise=True)
    with pytest.raises(TicketlabError, match="rewind_mode"):
        run(tmp_path_factory, "bad", "prune.strategy=grasp", "prune.rewind_mode=lr")


def test_two_copies_with_one_data_seed_have_no_barrier(weights_run):
    out, metrics = run_branch(weights_run / "level_02", "instability", points=5, seeds=[5, 5])
    a, b = (load_file(str(out / f"copy_{i}" / "final.safetensors")) for i in (0, 1))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert abs(metrics["error_barrier"]) < 1e-9 and abs(metrics["loss_barrier"]) < 1e-6
    assert (out / "interpolation.csv").read_text().count("\n") == 1 + 5
    assert json.loads((out / "metrics.json").read_text())["data_seeds"] == [5, 5]
    with pytest.raises(TicketlabError, match="other arguments"):
        run_branch(weights_run / "level_02", "instability", points=7, seeds=[5, 5])


def test_copies_with_different_data_seeds_differ_and_path_ends_are_the_levels(weights_run):
    out, metrics = run_branch(weights_run / "level_01", "instability", copies=2, points=3, seed=3)
    a, b = (load_file(str(out / f"copy_{i}" / "final.safetensors")) for i in (0, 1))
    assert any(not torch.equal(a[k], b[k]) for k in a)
    for i in (0, 1):
        copy = json.loads((out / f"copy_{i}" / "metrics.json").read_text())
        assert copy["data_seed"] == 3 + i
    assert metrics["accuracy_start"] == json.loads((out / "copy_0" / "metrics.json").read_text())["accuracy"]
    assert metrics["error_barrier"] >= 0.0
    _, nxt = run_branch(weights_run / "level_01", "interpolate_next", points=3)
    levels = [json.loads((weights_run / f"level_0{k}" / "metrics.json").read_text()) for k in (1, 2)]
    assert (nxt["accuracy_start"], nxt["accuracy_end"]) == (levels[0]["accuracy"], levels[1]["accuracy"])
    with pytest.raises(TicketlabError, match="not finished"):
        run_branch(weights_run / "level_02", "interpolate_next")


def test_shuffle_layerwise_and_invert_controls(weights_run):
    level = load_mask(weights_run / "level_02" / "mask.safetensors")
    prev = load_mask(weights_run / "level_01" / "mask.safetensors")
    out, _ = run_branch(weights_run / "level_02", "shuffle_layerwise")
    shuffled = load_mask(out / "mask.safetensors")
    assert {n: int(m.sum()) for n, m in shuffled.items()} == {n: int(m.sum()) for n, m in level.items()}
    out, _ = run_branch(weights_run / "level_02", "invert")
    inverted = load_mask(out / "mask.safetensors")
    weights = load_file(str(weights_run / "level_01" / "final.safetensors"))
    assert _kept(inverted) == _kept(level)
    kept = torch.cat([weights[n][inverted[n]].abs() for n in prev])
    dropped = torch.cat([weights[n][prev[n] & ~inverted[n]].abs() for n in prev])
    assert kept.max() <= dropped.min()  # the smallest of the previous level's alive weights are kept
    with pytest.raises(TicketlabError, match="--points"):
        run_branch(weights_run / "level_02", "invert", points=3)


def test_recompute_batchnorm_is_the_average_over_the_fixed_batches():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    batches = [torch.randn(8, 3) for _ in range(3)]
    task = SimpleNamespace(loss=lambda m, b, d: {"loss": m(b).sum()})
    assert recompute_batchnorm(model, SimpleNamespace(task=task, device=torch.device("cpu")), batches)
    with torch.no_grad():
        feats = [model[0](b) for b in batches]
    torch.testing.assert_close(model[1].running_mean, torch.stack([f.mean(0) for f in feats]).mean(0))
    torch.testing.assert_close(model[1].running_var, torch.stack([f.var(0) for f in feats]).mean(0))
    assert not model.training and model[1].momentum == 0.1


def test_interpolation_and_barrier_by_hand():
    a = {"w": torch.tensor([0.0, 2.0]), "n": torch.tensor(3)}
    b = {"w": torch.tensor([4.0, -2.0]), "n": torch.tensor(9)}
    mid = interpolate(a, b, 0.25)
    assert torch.equal(mid["w"], torch.tensor([1.0, 1.0])) and int(mid["n"]) == 3
    assert barrier([0.9, 0.5, 0.7], higher_is_better=True) == pytest.approx(0.3)
    assert barrier([0.2, 0.9, 0.4], higher_is_better=False) == pytest.approx(0.6)


def test_report_compares_methods_and_draws_barriers(tmp_path_factory, tmp_path, weights_run, lr_run, snip_run):
    late = run(tmp_path_factory, "late", "prune.rewind=10it", "prune.levels=1")
    barriers = {}
    for r in (weights_run, late):
        _, m = run_branch(r / "level_01", "instability", copies=2, points=3, seed=3)
        barriers[r] = m["error_barrier"]
    run_branch(weights_run / "level_01", "interpolate_next", points=3)
    result = write_report([weights_run, late, lr_run, snip_run], tmp_path / "report")
    names = {p.name for p in result.files}
    assert {"methods_accuracy_vs_sparsity.png", "error_barrier_vs_sparsity.png",
            "instability_vs_rewind_step.png", "instability.csv"} <= names
    page = (tmp_path / "report" / "index.html").read_text()
    for label in ("IMP, weight rewinding to init", "IMP, LR rewinding", "SNIP at init", "IMP, weight rewinding to 10it"):
        assert label in page
    with open(tmp_path / "report" / "instability.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["branch"] == "instability" and r["level"] == "1"]
    assert sorted(float(r["error_barrier"]) for r in rows) == sorted(barriers.values())
    assert sorted(int(r["rewind_step"]) for r in rows) == [0, 10]
