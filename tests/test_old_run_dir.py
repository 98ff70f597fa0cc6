"""A run dir written before the task registry (tests/fixtures/run_before_registry: made by main at
45c21e2 with LeNet-300-100 at width 0.1 on digits, 2 levels of 6 steps; no RUN_DIR/task.json)
still opens in report, eval and info, and resumes with find — which then records task.json."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ticketlab.cli import main

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "run_before_registry"


@pytest.fixture
def old_run(tmp_path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(FIXTURE, run)
    return run


def test_old_run_dir_reads_and_resumes(old_run, tmp_path, capsys):
    assert not (old_run / "task.json").exists()
    recorded = json.loads((old_run / "level_01" / "metrics.json").read_text())

    assert main(["report", str(old_run), "--out", str(tmp_path / "report")]) == 0
    assert (tmp_path / "report" / "accuracy_vs_sparsity.png").is_file()  # headline from the registered task

    capsys.readouterr()
    assert main(["eval", str(old_run / "level_01")]) == 0
    accuracy = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("accuracy: "))
    assert float(accuracy.split(": ")[1]) == pytest.approx(recorded["accuracy"], abs=1e-6)
    assert main(["info", str(old_run / "level_01")]) == 0
    assert f"scope sparsity {recorded['sparsity_scope']:.4f}" in capsys.readouterr().out

    finished = {p: p.read_bytes() for p in old_run.rglob("*") if p.is_file() and "level_0" in str(p)}
    assert main(["find", str(old_run / "config.yaml"), "--out", str(old_run), "--set", "prune.levels=2"]) == 0
    assert all(p.read_bytes() == data for p, data in finished.items())  # finished levels are not redone
    assert (old_run / "level_02" / "metrics.json").is_file()
    assert json.loads((old_run / "task.json").read_text())["headline"] == "accuracy"
