"""Shared level 0: cells of a study that differ only in `prune.*` (strategy, rewind point, early-bird
draws) train their dense level once, and each cell ends exactly as it does when run alone; `--plan`
counts the trainings before anything runs (paper 001 Table 3 at one level: 16, not 31)."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest
import yaml

from ticketlab.cli import main
from ticketlab.lottery.evaluate import evaluate_level
from ticketlab.lottery.imp import run_imp
from ticketlab.lottery.matrix import cell_config as matrix_cell_config
from ticketlab.lottery.matrix import load_spec
from ticketlab.lottery.plan import format_plan
from ticketlab.lottery.study import cell_config, open_study, run_study

ROOT = Path(__file__).resolve().parents[1]
SET = ["train.duration=3ep", "train.eval_every=1ep", "train.checkpoint_every=1ep", "prune.levels=1",
       "prune.rate=0.5", "prune.early_bird=[0.3,0.6]", "prune.rewind_optimizer=true"]
LEVEL_FILES = ("mask.safetensors", "rewind.safetensors", "final.safetensors")


def rows_without_seconds(path: Path) -> list[dict]:
    with open(path) as f:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(f)]


def trainings(root: Path) -> int:
    """Levels trained under `root`: distinct final weights files (a hard link is the same file)."""
    return len({p.stat().st_ino for p in root.rglob("final.safetensors")})


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("shared")
    spec = root / "s.yaml"
    spec.write_text(yaml.safe_dump({"config": str(ROOT / "configs/digits_lenet.yaml"), "set": SET,
                                    "grid": {"prune.strategy": ["global", "layerwise"],
                                             "prune.rewind": ["init", "1ep", "5it"]}}))
    return spec, root / "out"


def test_plan_counts_one_dense_training_for_the_study(study, capsys):
    spec, out = study
    assert main(["sweep", str(spec), "--out", str(out), "--plan"]) == 0
    text = capsys.readouterr().out
    assert "dense-" in text and "level 0 of 6 cells" in text
    # 1 dense + 6 pruned levels; alone each cell would train its own level 0 as well
    assert "7 trainings (1 shared dense level(s) for 6 cells)" in text and "own: 12 trainings" in text
    # late resetting to 1 of 3 epochs trains 2/3 of a dense run; 5 of 66 steps: 61/66
    assert text.count(" 0.67  to do") == 2 and text.count(" 0.92  to do") == 2
    assert not out.exists()  # nothing ran


def test_sweep_trains_level_0_once_and_every_cell_ends_as_it_does_alone(study, tmp_path):
    spec, out = study
    run_study(spec, out, log=lambda s: None)
    assert trainings(out) == 1 + 6
    sr = open_study(spec, out)
    for cell in sr.cells:
        alone = tmp_path / cell.name
        run_imp(cell_config(sr.study, cell), alone, log=lambda s: None)
        shared = out / "cells" / cell.name
        assert rows_without_seconds(shared / "summary.csv") == rows_without_seconds(alone / "summary.csv")
        for level in (0, 1):
            for name in LEVEL_FILES:
                a, b = shared / f"level_{level:02d}" / name, alone / f"level_{level:02d}" / name
                assert a.read_bytes() == b.read_bytes(), (cell.name, level, name)
            history = f"level_{level:02d}/history.csv"
            assert rows_without_seconds(shared / history) == rows_without_seconds(alone / history)
        level0 = shared / "level_00"
        for extra in ("rewind_point.safetensors", "rewind_optimizer.safetensors"):
            assert (level0 / extra).is_file() == (alone / "level_00" / extra).is_file()
            if (level0 / extra).is_file():
                assert (level0 / extra).read_bytes() == (alone / "level_00" / extra).read_bytes()
        assert (level0 / "early_bird.json").read_text() == (alone / "level_00" / "early_bird.json").read_text()
        # the reference is stated, and the weights are the shared run's own bytes, not a copy
        record = yaml.safe_load((level0 / "shared.json").read_text())
        source = (shared / record["run"]).resolve()
        assert source.parent.name == "shared"
        assert os.path.samefile(level0 / "final.safetensors", source / "level_00" / "final.safetensors")
    # commands that read a level work on a member's linked level 0
    metrics = evaluate_level(out / "cells" / sr.cells[0].name / "level_00")
    assert metrics["accuracy"] == pytest.approx(
        float(rows_without_seconds(out / "cells" / sr.cells[0].name / "summary.csv")[0]["accuracy"]))
    lines = []
    run_study(spec, out, log=lines.append)  # a rerun trains nothing
    assert all(line.endswith("finished, skipped") for line in lines) and trainings(out) == 7


def test_table3_preset_at_one_level_and_one_seed_plans_16_trainings(tmp_path, capsys):
    spec = tmp_path / "t3.yaml"
    spec.write_text(yaml.safe_dump({"config": str(ROOT / "configs/synth_fasterrcnn_lite.yaml"),
                                    "preset": "module_groups", "set": ["prune.levels=1", "prune.rate=0.8"]}))
    lines = format_plan(open_study(spec, tmp_path / "out").plan())
    assert lines[-1].startswith("16 trainings (1 shared dense level(s) for 16 cells)")
    assert "each cell on its own: 31 trainings" in lines[-1]


def test_transfer_matrix_rows_that_differ_in_prune_share_the_dense_level(tmp_path, capsys):
    spec = tmp_path / "m.yaml"
    spec.write_text(yaml.safe_dump({
        "seeds": [0], "targets": {"digits": {"config": str(ROOT / "configs/digits_lenet.yaml"),
                                             "set": ["train.duration=2ep", "prune.levels=1", "prune.rate=0.5"]}},
        "sources": {"late reset": ["prune.rewind=1ep"], "layerwise": ["prune.strategy=layerwise"]}}))
    out = tmp_path / "out"
    assert main(["transfer-matrix", str(spec), "--out", str(out), "--plan"]) == 0
    assert "4 trainings (1 shared dense level(s) for 3 cells)" in capsys.readouterr().out
    assert main(["transfer-matrix", str(spec), "--out", str(out)]) == 0
    assert trainings(out) == 4
    alone = tmp_path / "alone"
    matrix = load_spec(spec)
    row = next(r for r in matrix.rows() if r.name == "late reset")
    run_imp(matrix_cell_config(matrix, row, "digits", 0), alone, log=lambda s: None)
    assert rows_without_seconds(out / "late_reset" / "digits" / "seed_0" / "summary.csv") == \
        rows_without_seconds(alone / "summary.csv")
