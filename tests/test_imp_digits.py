"""IMP end to end on the real digits data: the run-directory contract, the masks, and the controls."""

import csv
import json
import math

import pytest
import torch
import torch.nn.utils.prune as tprune
from safetensors import safe_open
from safetensors.torch import load_file

from ticketlab.config import load_config
from ticketlab.lottery.branches import run_branch
from ticketlab.lottery.imp import run_imp
from ticketlab.sparsity import load_mask
from ticketlab.tasks import build_task_data, build_task_model

FAST = ["train.duration=4ep", "train.eval_every=2ep", "train.checkpoint_every=1ep", "prune.levels=3"]


def small_config(*extra):
    return load_config("configs/digits_lenet.yaml", FAST + list(extra))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("digits") / "run"
    run_imp(small_config(), out, log=lambda s: None)
    return out


def read_summary(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_run_directory_contract(run_dir):
    assert (run_dir / "config.yaml").is_file()
    rows = read_summary(run_dir / "summary.csv")
    assert [int(r["level"]) for r in rows] == [0, 1, 2, 3]
    for level in range(4):
        d = run_dir / f"level_{level:02d}"
        for name in ("mask.safetensors", "rewind.safetensors", "final.safetensors", "metrics.json", "history.csv"):
            assert (d / name).is_file(), d / name
        assert not (d / "checkpoint.safetensors").exists()
        metrics = json.loads((d / "metrics.json").read_text())
        assert metrics["level"] == level
        assert 0.0 <= metrics["accuracy"] <= 1.0
        # scope sparsity follows the schedule exactly: 0.8^k of the scope kept (rounded per level)
        assert metrics["sparsity_scope"] == pytest.approx(1 - 0.8 ** level, abs=1e-4)
        assert metrics["sparsity_network"] < metrics["sparsity_scope"] or level == 0
        # pruned weights are exactly zero in the trained and the rewind weights
        mask = load_mask(d / "mask.safetensors")
        for state_file in ("final.safetensors", "rewind.safetensors"):
            state = load_file(str(d / state_file))
            for name, keep in mask.items():
                assert torch.all(state[name][~keep] == 0)
        # the packed mask takes about n/8 bytes
        n = sum(m.numel() for m in mask.values())
        payload = (d / "mask.safetensors").stat().st_size
        assert math.ceil(n / 8) <= payload <= math.ceil(n / 8) + 2048
        with safe_open(str(d / "mask.safetensors"), "pt") as f:
            meta = f.metadata()
            assert meta["format"] == "ticketlab-mask/1" and meta["bitorder"] == "little"
            for name in f.keys():
                assert f.get_tensor(name).dtype == torch.uint8
    history = read_summary(run_dir / "level_01" / "history.csv")
    assert {"step", "epoch", "lr", "accuracy"} <= set(history[0])


def test_masks_equal_torch_global_unstructured(run_dir):
    """Level k's mask is exactly what torch.nn.utils.prune computes from level k-1's final weights."""
    cfg = load_config(run_dir / "config.yaml")
    torch.manual_seed(0)
    model = build_task_model(cfg, build_task_data(cfg)).module
    for level in range(1, 4):
        prev = run_dir / f"level_{level - 1:02d}"
        model.load_state_dict(load_file(str(prev / "final.safetensors")))
        prev_mask = load_mask(prev / "mask.safetensors")
        modules = dict(model.named_modules())
        params = []
        for name, keep in prev_mask.items():
            module = modules[name.rsplit(".", 1)[0]]
            tprune.custom_from_mask(module, "weight", keep)
            params.append((module, "weight"))
        tprune.global_unstructured(params, pruning_method=tprune.L1Unstructured, amount=cfg.prune.rate)
        ours = load_mask(run_dir / f"level_{level:02d}" / "mask.safetensors")
        for name in ours:
            module = modules[name.rsplit(".", 1)[0]]
            assert torch.equal(module.weight_mask.bool(), ours[name]), (level, name)
            tprune.remove(module, "weight")


def test_rerun_is_a_no_op(run_dir):
    before = {p.name: p.stat().st_mtime_ns for p in (run_dir / "level_02").iterdir()}
    run_imp(small_config(), run_dir, log=lambda s: None)
    assert {p.name: p.stat().st_mtime_ns for p in (run_dir / "level_02").iterdir()} == before


def test_late_rewinding_and_branches(tmp_path):
    out = tmp_path / "late"
    run_imp(small_config("prune.levels=1", "prune.rewind=30it", "prune.rewind_optimizer=true"), out, log=lambda s: None)
    level0 = out / "level_00"
    assert (level0 / "rewind_point.safetensors").is_file()
    # level 1 starts from the dense weights after 30 steps, masked
    point = load_file(str(level0 / "rewind_point.safetensors"))
    start = load_file(str(out / "level_01" / "rewind.safetensors"))
    mask = load_mask(out / "level_01" / "mask.safetensors")
    for name, value in start.items():
        expected = point[name] * mask[name] if name in mask else point[name]
        assert torch.equal(value, expected), name
    # level 1 trains only the steps after the rewind point
    metrics = json.loads((out / "level_01" / "metrics.json").read_text())
    dense = json.loads((level0 / "metrics.json").read_text())
    assert metrics["steps"] == dense["steps"] - 30

    for name, fraction in (("reinit", None), ("random_mask", None), ("complement", None), ("perturb", 0.1)):
        bdir, m = run_branch(out / "level_01", name, fraction=fraction)
        assert (bdir / "metrics.json").is_file() and (bdir / "final.safetensors").is_file()
        bmask = load_mask(bdir / "mask.safetensors")
        kept = {n: int(v.sum()) for n, v in bmask.items()}
        if name in ("reinit", "random_mask", "perturb"):
            assert kept == {n: int(v.sum()) for n, v in mask.items()}
        if name == "reinit":
            assert all(torch.equal(bmask[n], mask[n]) for n in mask)
            assert not torch.equal(load_file(str(bdir / "rewind.safetensors"))["layer1.weight"],
                                   start["layer1.weight"])
        if name == "complement":
            assert all(torch.equal(bmask[n], ~mask[n]) for n in mask)
        if name == "perturb":
            changed = sum(int((bmask[n] != mask[n]).sum()) for n in mask)
            total_kept = sum(kept.values())
            assert changed == 2 * sum(round(0.1 * int(mask[n].sum())) for n in mask)
            assert 0 < changed < total_kept

    # rerunning with more levels extends the run; finished levels stay as they were
    before = (out / "level_01" / "final.safetensors").read_bytes()
    run_imp(small_config("prune.levels=2", "prune.rewind=30it", "prune.rewind_optimizer=true"), out, log=lambda s: None)
    assert (out / "level_02" / "metrics.json").is_file()
    assert (out / "level_01" / "final.safetensors").read_bytes() == before


@pytest.mark.parametrize("strategy", ["layerwise", "random"])
def test_other_strategies(tmp_path, strategy):
    out = tmp_path / strategy
    run_imp(small_config("prune.levels=2", f"prune.strategy={strategy}", "train.duration=1ep"), out, log=lambda s: None)
    m1 = load_mask(out / "level_01" / "mask.safetensors")
    m2 = load_mask(out / "level_02" / "mask.safetensors")
    for name in m1:
        assert not torch.any(m2[name] & ~m1[name])  # pruned weights never come back
        if strategy == "layerwise":
            n = m1[name].numel()
            assert int(m1[name].sum()) == n - round(0.2 * n)


def test_rewind_to_pretrained_weights_and_reinit_ignores_them(run_dir, tmp_path):
    """Paper 002's θ_p: every level restarts from the loaded weights; reinit draws a random init."""
    pretrained = run_dir / "level_00" / "final.safetensors"  # any torchvision-format state dict
    out = tmp_path / "pretrained"
    run_imp(small_config("prune.levels=1", "train.duration=1ep", f"model.weights={pretrained}",
                         "prune.rewind=pretrained"), out, log=lambda s: None)
    theta_p = load_file(str(pretrained))
    mask = load_mask(out / "level_01" / "mask.safetensors")
    start = load_file(str(out / "level_01" / "rewind.safetensors"))
    for name, value in start.items():
        expected = theta_p[name] * mask[name] if name in mask else theta_p[name]
        assert torch.equal(value, expected), name
    bdir, _ = run_branch(out / "level_01", "reinit")
    fresh = load_file(str(bdir / "rewind.safetensors"))
    assert not torch.equal(fresh["layer1.weight"], start["layer1.weight"])
    assert torch.all(fresh["layer1.weight"][~mask["layer1.weight"]] == 0)
