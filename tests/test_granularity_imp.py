"""IMP with rewinding at channel and N:M granularity: exact counts per level, removed channels' norms
held at 0, the controls in the granularity's units, compacted exports, and a SIGKILL-resumed channel
run bit-identical to an uninterrupted one."""

import json

import pytest
import torch
from safetensors import safe_open

from ticketlab.cli import main
from ticketlab.config import load_config
from ticketlab.deploy import export_level
from ticketlab.lottery.branches import run_branch
from ticketlab.lottery.imp import run_imp
from ticketlab.lottery.opened import open_level
from ticketlab.sparsity import load_mask
from ticketlab.sparsity.nm import covered, group_counts

from test_resume_kill import assert_killed_in_level_1_resumes_like_reference

QUICK = ["train.duration=1ep", "train.eval_every=1ep", "train.checkpoint_every=1ep", "prune.levels=2"]


def channel_structured(mask):
    for m in mask.values():
        k = m.reshape(m.shape[0], m.shape[1], -1)
        kernels = k.any(2)
        if not ((k.all(2) | ~k.any(2)).all() and torch.equal(kernels, kernels.any(1)[:, None] & kernels.any(0)[None, :])):
            return False
    return True


@pytest.fixture(scope="module")
def channel_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("channel") / "run"
    cfg = load_config("configs/digits_resnet20.yaml", [*QUICK, "prune.granularity=channel", "prune.rate=0.3",
                                                      "prune.exclude=[fc]"])
    run_imp(cfg, run, log=lambda s: None)
    return run


def level_units(run, level):
    opened = open_level(run / f"level_{level:02d}")
    return opened, opened.experiment.granularity().units(opened.mask)


@pytest.mark.slow
def test_channel_levels_remove_exact_counts_and_hold_norms_at_zero(channel_run):
    alive_before = None
    for level in (0, 1, 2):
        opened, units = level_units(channel_run, level)
        alive = sum(int(a.sum()) for a in units.values())
        metrics = json.loads((channel_run / f"level_{level:02d}" / "metrics.json").read_text())
        assert (metrics["channels_kept"], metrics["channels_scope"]) == (alive, sum(a.numel() for a in units.values()))
        if alive_before is not None:
            assert alive_before - alive == round(0.3 * alive_before)
        alive_before = alive
        assert channel_structured(opened.mask)
        state = opened.experiment.model.state_dict()
        held = opened.experiment.granularity().held(opened.mask)
        assert held and all(not state[n][~keep].any() for n, keep in held.items())  # γ, β of removed channels
    stream = units["conv.weight" if "conv.weight" in units else next(iter(units))]
    assert 0 < int(stream.sum()) < stream.numel()


@pytest.mark.slow
def test_channel_ticket_exports_compacted(channel_run, tmp_path, capsys):
    level = channel_run / "level_02"
    result = export_level(level, "onnx", tmp_path / "t.onnx", compact=True)  # checked against the masked model
    opened, units = level_units(channel_run, 2)
    removed = sum(a.numel() - int(a.sum()) for a in units.values())
    assert result.compaction.channels_removed >= removed > 0
    assert result.compaction.params_after < 0.6 * result.compaction.params_before
    sd = export_level(level, "state_dict", tmp_path / "t.safetensors", compact=True)
    with safe_open(str(sd.path), "pt") as f:
        kept = json.loads(f.metadata()["ticketlab_kept_channels"])
    assert {n: len(v) for n, v in kept.items()} == {n: int(a.sum()) for n, a in units.items()}
    assert main(["export", str(level), "--format", "torchscript", "--compact", "--out", str(tmp_path / "t.pt")]) == 0
    assert "hidden channels removed" in capsys.readouterr().out
    assert main(["info", str(level)]) == 0
    assert f"{int(next(iter(units.values())).sum())}/" in capsys.readouterr().out


@pytest.mark.slow
def test_controls_respect_channels(channel_run):
    level = channel_run / "level_02"
    opened, units = level_units(channel_run, 2)
    gran = opened.experiment.granularity()
    shapes = {n: tuple(m.shape) for n, m in opened.mask.items()}
    masks = {}
    for name, fraction in (("reinit", None), ("random_mask", None), ("complement", None), ("perturb", 0.2)):
        out, _ = run_branch(level, name, fraction=fraction)
        masks[name] = load_mask(out / "mask.safetensors", shapes)
        assert channel_structured(masks[name]), name
    assert all(torch.equal(masks["reinit"][n], opened.mask[n]) for n in shapes)
    for name in ("random_mask", "perturb"):
        got = gran.units(masks[name])
        assert {n: int(a.sum()) for n, a in got.items()} == {n: int(a.sum()) for n, a in units.items()}, name
        assert any(not torch.equal(got[n], units[n]) for n in units), name
    comp = gran.units(masks["complement"])
    assert all(torch.equal(comp[n], ~units[n]) for n in units)


def test_nm_levels_keep_exactly_n_and_stop(tmp_path):
    run = tmp_path / "run"
    cfg = load_config("configs/digits_lenet.yaml", [*QUICK, "prune.granularity=2:4"])
    run_imp(cfg, run, log=lambda s: None)
    shapes = None
    masks = []
    for level in (1, 2):
        opened = open_level(run / f"level_{level:02d}")
        shapes = {n: tuple(m.shape) for n, m in opened.mask.items()}
        masks.append(opened.mask)
        for name, m in opened.mask.items():
            assert covered(m.shape, 4) and (group_counts(m, 4) == 2).all(), (level, name)
    assert all(torch.equal(masks[0][n], masks[1][n]) for n in shapes)  # N:M reached at level 1, then held
    out, metrics = run_branch(run / "level_02", "random_mask")
    shuffled = load_mask(out / "mask.safetensors", shapes)
    assert all((group_counts(m, 4) == 2).all() for m in shuffled.values())
    assert metrics["sparsity_scope"] == pytest.approx(0.5)


KILL_ARGS = ["--set", "train.duration=6ep", "--set", "train.checkpoint_every=1ep", "--set", "train.eval_every=3ep",
             "--set", "prune.levels=1", "--set", "prune.granularity=channel"]


@pytest.mark.slow
def test_channel_run_killed_mid_level_resumes_bit_identically(tmp_path):
    assert_killed_in_level_1_resumes_like_reference(tmp_path, KILL_ARGS, levels=2)


def test_bn_gamma_without_batchnorm_is_refused_before_training(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["find", "configs/digits_lenet.yaml", "--set", "prune.granularity=channel",
                 "--set", "prune.channel_score=bn_gamma", "--out", str(out)]) == 2
    assert "prune.channel_score bn_gamma: the channels of layer1.weight have no BatchNorm" in capsys.readouterr().err
    assert not (out / "level_00").exists()
