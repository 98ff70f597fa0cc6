"""The command line: bad input ends in one line on stderr and a non-zero exit, never a traceback.

A diverged level, `eval` with a mask that does not fit and `find --debug` run as real `python -m
ticketlab` processes (what reaches stderr from imports to exit, a warning included); the errors found
before any training, and the rerun that resumes the diverged level, call the same `cli.main` in the
test process (`run_here`), where a traceback would fail the test as the exception itself, as a
process costs seconds of interpreter and torch start-up (tests/test_hostile_inputs.py takes `find`'s
bad configs, data and files through real processes).
"""

import csv
import json
import math
import subprocess
import sys
from dataclasses import dataclass

import pytest
import torch
from safetensors.torch import save_file

from ticketlab.cli import main
from ticketlab.lottery.imp import run_imp
from ticketlab.config import load_config


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "ticketlab", *args], capture_output=True, text=True, timeout=300)


@dataclass(frozen=True)
class Result:
    returncode: int
    stderr: str


def run_here(capsys, *args) -> Result:
    """`ticketlab ARGS` through `cli.main` in this process: its exit status and what it wrote to stderr."""
    capsys.readouterr()
    returncode = main(list(args))
    return Result(returncode, capsys.readouterr().err)


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


def test_unknown_key_and_wrong_type(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("train: {lrr: 0.1}\n")
    assert_one_line_error(run_here(capsys, "find", str(cfg), "--out", str(tmp_path / "r")), str(cfg), "train.lrr",
                          "train.lr")
    assert_one_line_error(run_here(capsys, "find", "configs/digits_lenet.yaml", "--set", "train.lr=abc",
                                   "--out", str(tmp_path / "r")), "train.lr", "expected a number")


def test_missing_data_dir(tmp_path, capsys):
    result = run_here(capsys, "find", "configs/cifar10_resnet20.yaml", "--set", f"data.root={tmp_path / 'nowhere'}",
                      "--out", str(tmp_path / "r"))
    assert_one_line_error(result, "nowhere", "cifar-10-batches-py")


def test_changed_config_on_resume_refused(tiny_run, capsys):
    result = run_here(capsys, "find", "configs/digits_lenet.yaml", "--set", "train.duration=1ep", "--set",
                      "prune.levels=1", "--set", "train.batch_size=32", "--out", str(tiny_run))
    assert_one_line_error(result, "different config", "train.batch_size")


def test_diverged_level_resumes_with_a_lower_learning_rate_and_the_change_is_logged(tmp_path, capsys):
    args = ["find", "configs/digits_lenet.yaml", "--set", "train.optimizer=sgd", "--set", "train.duration=4ep",
            "--set", "train.checkpoint_every=1ep", "--set", "train.schedule=multistep",
            "--set", "train.milestones=[1ep]", "--set", "train.gamma=100", "--set", "prune.levels=1",
            "--out", str(tmp_path / "r")]
    # epoch 1 at lr 0.2 is healthy and checkpointed; at 0.2 × 100 level 0 blows up in epoch 2
    diverged = run_cli(*args, "--set", "train.lr=0.2")  # a process: nothing but the line reaches stderr
    assert_one_line_error(diverged, "training diverged at step", "train.lr", "level_00/checkpoint.safetensors")

    rescued = run_here(capsys, *args, "--set", "train.lr=0.0005")
    assert rescued.returncode == 0, rescued.stderr
    assert load_config(tmp_path / "r" / "config.yaml").train.lr == 0.0005
    changes = [json.loads(line) for line in (tmp_path / "r" / "config_changes.jsonl").read_text().splitlines()]
    assert changes == [{"from_level": 0, "key": "train.lr", "old": 0.2, "new": 0.0005}]
    with open(tmp_path / "r" / "level_00" / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows[-1]["step"] == "88" and all(math.isfinite(float(r["loss"])) for r in rows)
    assert json.loads((tmp_path / "r" / "level_01" / "metrics.json").read_text())["accuracy"] > 0.9
    assert float(rows[-1]["lr"]) == 0.05  # 0.0005 × 100: the resumed part trained at the new rate


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
