"""The command line: bad input ends in one line on stderr and a non-zero exit, never a traceback."""

import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

from ticketlab.cli import main
from ticketlab.lottery.imp import run_imp
from ticketlab.config import load_config


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "ticketlab", *args], capture_output=True, text=True, timeout=300)


def assert_one_line_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    lines = [l for l in result.stderr.strip().splitlines() if l.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("ticketlab: error:")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    cfg = load_config("configs/digits_lenet.yaml", ["train.duration=1ep", "prune.levels=1"])
    run_imp(cfg, out, log=lambda s: None)
    return out


def test_unknown_key_and_wrong_type(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("train: {lrr: 0.1}\n")
    assert_one_line_error(run_cli("find", str(cfg), "--out", str(tmp_path / "r")), str(cfg), "train.lrr", "train.lr")
    assert_one_line_error(run_cli("find", "configs/digits_lenet.yaml", "--set", "train.lr=abc",
                                  "--out", str(tmp_path / "r")), "train.lr", "expected a number")


def test_missing_data_dir(tmp_path):
    result = run_cli("find", "configs/cifar10_resnet20.yaml", "--set", f"data.root={tmp_path / 'nowhere'}",
                     "--out", str(tmp_path / "r"))
    assert_one_line_error(result, "nowhere", "cifar-10-batches-py")


def test_changed_config_on_resume_refused(tiny_run):
    result = run_cli("find", "configs/digits_lenet.yaml", "--set", "train.duration=1ep", "--set", "prune.levels=1",
                     "--set", "train.lr=0.5", "--out", str(tiny_run))
    assert_one_line_error(result, "different config", "train.lr")


def test_mask_that_does_not_fit(tiny_run, tmp_path):
    level = tiny_run / "level_01"
    bad = tmp_path / "level_01"
    bad.mkdir()
    for f in level.iterdir():
        if f.is_file():
            (bad / f.name).write_bytes(f.read_bytes())
    (tmp_path / "config.yaml").write_bytes((tiny_run / "config.yaml").read_bytes())
    save_file({"layer1.weight": torch.zeros(3, 3)}, str(bad / "final.safetensors"))
    assert_one_line_error(run_cli("eval", str(bad)), "final.safetensors", "does not fit")


def test_eval_and_info_on_a_level(tiny_run, capsys):
    assert main(["eval", str(tiny_run / "level_01")]) == 0
    out = capsys.readouterr().out
    assert "accuracy:" in out
    assert main(["info", str(tiny_run / "level_01")]) == 0
    out = capsys.readouterr().out
    assert "scope sparsity 0.2000" in out and "layer1.weight" in out


def test_info_on_a_config_lists_groups(capsys):
    assert main(["info", "configs/digits_lenet.yaml"]) == 0
    out = capsys.readouterr().out
    for group in ("layer1", "layer2", "fc"):
        assert group in out
    # LeNet-300-100 on 8x8 digits: 64*300 + 300*100 + 100*10 weights, 300 + 100 + 10 biases
    assert "50610 parameters; scope: 50200" in out


def test_debug_shows_traceback(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("train: {lrr: 0.1}\n")
    result = run_cli("find", str(cfg), "--debug")
    assert result.returncode != 0 and "Traceback" in result.stderr
