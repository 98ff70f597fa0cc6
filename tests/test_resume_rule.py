"""What a rerun may reuse (issue #13): one rule, `RunDir.check_config`, for a resumed `find`, a sweep
cell and a transfer-matrix cell, finished or not. A finished cell whose spec changed (a new train.lr)
is refused in one line instead of being silently reused; settings that change only how a run goes on
(device, logging, checkpoint interval) are not. A run or study dir moved or copied together with its
inputs resumes, and reads them from anywhere, while a different input at another place is refused;
relative `model.weights` and `init.source` follow the same rule as `data.root`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from ticketlab.analysis.runs import group_series, load_run
from ticketlab.cli import main

DIGITS = Path(__file__).resolve().parents[1] / "configs" / "digits_lenet.yaml"
TINY = ["model.width=0.1", "train.duration=2it", "train.eval_every=2it", "train.checkpoint_every=2it",
        "train.batch_size=16", "prune.levels=1"]


def _sets(items: list[str]) -> list[str]:
    return [a for s in items for a in ("--set", s)]


def _stamps(root: Path) -> dict[Path, int]:
    found = {p.relative_to(root): p.stat().st_mtime_ns for p in root.rglob("metrics.json")}
    assert found
    return found


def _one_line_error(capsys, *fragments: str) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, err
    return err


def _images(root: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for split in ("train", "val"):
        for c in ("a", "b"):
            (root / split / c).mkdir(parents=True)
            for i in range(4):
                Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(root / split / c / f"{i}.png")


def test_a_finished_matrix_cell_refuses_a_changed_spec_but_not_a_launch_setting(tmp_path, capsys):
    def spec(extra: list[str]) -> Path:
        path = tmp_path / "spec.yaml"
        target = {"config": str(DIGITS), "set": TINY + extra}
        path.write_text(yaml.safe_dump({"seeds": [0], "targets": {"digits": target},
                                        "sources": {"random": ["prune.strategy=random"]}}))
        return path

    out = tmp_path / "out"
    assert main(["transfer-matrix", str(spec([])), "--out", str(out)]) == 0
    before, config = _stamps(out), (out / "dense" / "digits" / "seed_0" / "config.yaml").read_text()

    launch_only = ["train.device=cpu", "train.tensorboard=false", "train.checkpoint_every=1it", "train.dist_timeout=60"]
    assert main(["transfer-matrix", str(spec(launch_only)), "--out", str(out)]) == 0
    assert _stamps(out) == before

    capsys.readouterr()
    assert main(["transfer-matrix", str(spec(["train.lr=0.05"])), "--out", str(out)]) == 2
    _one_line_error(capsys, f"{out / 'dense' / 'digits' / 'seed_0'} was started with a different config",
                    "train.lr: 0.0012 → 0.05", "every level is finished", "new --out", "delete")
    assert _stamps(out) == before and not list(out.rglob("config_changes.jsonl"))
    assert yaml.safe_load((out / "dense" / "digits" / "seed_0" / "config.yaml").read_text())["train"]["lr"] == 0.0012
    assert config != (out / "dense" / "digits" / "seed_0" / "config.yaml").read_text()  # launch settings recorded


def test_a_study_whose_config_file_changed_is_refused_before_anything_trains(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(DIGITS.read_text())
    study = tmp_path / "s.yaml"
    study.write_text(yaml.safe_dump({"config": "c.yaml", "set": TINY, "grid": {"train.seed": [0, 1]}}))
    out = tmp_path / "out"
    assert main(["sweep", str(study), "--out", str(out)]) == 0
    before = _stamps(out)

    config.write_text(DIGITS.read_text().replace("lr: 0.0012", "lr: 0.05"))  # same file, same spec: new lr
    capsys.readouterr()
    assert main(["sweep", str(study), "--out", str(out)]) == 2
    _one_line_error(capsys, str(out / "cells" / "seed=0"), "train.lr: 0.0012 → 0.05")
    assert _stamps(out) == before


def test_a_recovery_change_applies_to_levels_left_to_train_only(tmp_path, capsys):
    run = tmp_path / "r"
    assert main(["find", str(DIGITS), *_sets(TINY), "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["find", str(DIGITS), *_sets(TINY + ["train.lr=0.05"]), "--out", str(run)]) == 2
    _one_line_error(capsys, "train.lr: 0.0012 → 0.05", "every level is finished")

    more = TINY + ["prune.levels=2", "train.lr=0.05"]  # a level still to train: the change is taken and logged
    assert main(["find", str(DIGITS), *_sets(more), "--out", str(run)]) == 0
    changes = [json.loads(line) for line in (run / "config_changes.jsonl").read_text().splitlines()]
    assert changes == [{"from_level": 2, "key": "train.lr", "old": 0.0012, "new": 0.05}]

    # the rescued run, finished, under its original value (a sweep cell rescued by hand, its study rerun):
    # reused with its record kept; any other value is still refused
    before = _stamps(run)
    assert main(["find", str(DIGITS), *_sets(TINY + ["prune.levels=2"]), "--out", str(run)]) == 0
    assert _stamps(run) == before and yaml.safe_load((run / "config.yaml").read_text())["train"]["lr"] == 0.05
    assert len((run / "config_changes.jsonl").read_text().splitlines()) == 1
    capsys.readouterr()
    assert main(["find", str(DIGITS), *_sets(TINY + ["prune.levels=2", "train.lr=0.01"]), "--out", str(run)]) == 2
    _one_line_error(capsys, "train.lr: 0.05 → 0.01")


def test_a_study_copied_with_its_data_resumes_and_other_data_is_refused(tmp_path, monkeypatch, capsys):
    work = tmp_path / "work"
    _images(work / "data" / "imgs", seed=0)
    (work / "c.yaml").write_text(DIGITS.read_text())
    study_set = TINY + ["data.format=imagefolder", "data.root=data/imgs", "data.image_size=8"]
    (work / "s.yaml").write_text(yaml.safe_dump({"config": "c.yaml", "set": study_set,
                                                 "grid": {"prune.rate": [0.2, 0.5]}}))  # a shared dense level too
    monkeypatch.chdir(work)
    assert main(["sweep", "s.yaml", "--out", "out"]) == 0
    assert (work / "out" / "shared").is_dir()
    cell = work / "out" / "cells" / "rate=0.5"
    assert json.loads((cell / "paths.json").read_text())["relative_to_run_dir"] == {"data.root": "../../../data/imgs"}
    accuracy = json.loads((cell / "level_01" / "metrics.json").read_text())["accuracy"]
    before = _stamps(work / "out")

    moved = tmp_path / "elsewhere" / "work"
    shutil.copytree(work, moved)
    shutil.rmtree(work)  # nothing may still read the old place
    monkeypatch.chdir(moved)
    assert main(["sweep", "s.yaml", "--out", "out"]) == 0
    assert _stamps(moved / "out") == before
    cell_args = ["find", "c.yaml", *_sets(study_set + ["prune.rate=0.5"])]
    assert main([*cell_args, "--out", "again"]) == 0  # run here today: one series with the moved cell
    assert len(group_series([load_run(moved / "out" / "cells" / "rate=0.5"), load_run(moved / "again")])) == 1

    monkeypatch.chdir(tmp_path)  # read from anywhere: a moved cell finds its data through paths.json
    capsys.readouterr()
    assert main(["eval", str(moved / "out" / "cells" / "rate=0.5" / "level_01")]) == 0
    out = capsys.readouterr().out
    assert float(next(l for l in out.splitlines() if l.startswith("accuracy: ")).split(": ")[1]) == \
        pytest.approx(accuracy, abs=1e-6)

    decoy = tmp_path / "decoy"  # the same relative spelling from another directory names other data
    _images(decoy / "data" / "imgs", seed=1)
    monkeypatch.chdir(decoy)
    capsys.readouterr()
    cell_args[1] = str(moved / "c.yaml")
    assert main([*cell_args, "--out", str(moved / "out" / "cells" / "rate=0.5")]) == 2
    _one_line_error(capsys, "different config", "data.root", str((decoy / "data" / "imgs").resolve()))
    assert _stamps(moved / "out") == before


def test_relative_weights_and_source_are_recorded_and_follow_a_moved_run(tmp_path, monkeypatch, capsys):
    base = tmp_path / "base"
    base.mkdir()
    monkeypatch.chdir(base)
    assert main(["find", str(DIGITS), *_sets(TINY), "--out", "runs/a"]) == 0
    transfer = TINY + ["model.weights=runs/a/level_00/final.safetensors", "init.source=runs/a/level_01",
                       "init.mode=mask", "init.map=shared"]
    assert main(["find", str(DIGITS), *_sets(transfer), "--out", "runs/b"]) == 0
    recorded = yaml.safe_load((base / "runs" / "b" / "config.yaml").read_text())
    assert recorded["model"]["weights"] == str(base.resolve() / "runs" / "a" / "level_00" / "final.safetensors")
    assert recorded["init"]["source"] == str(base.resolve() / "runs" / "a" / "level_01")
    before = _stamps(base / "runs")

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # eval builds the model again: weights and source found from here
    assert main(["eval", str(base / "runs" / "b" / "level_01")]) == 0

    moved = tmp_path / "moved"
    shutil.move(base, moved)
    assert main(["eval", str(moved / "runs" / "b" / "level_01")]) == 0
    monkeypatch.chdir(moved)  # the same command in the moved tree: the same run, nothing retrained
    assert main(["find", str(DIGITS), *_sets(transfer), "--out", "runs/b"]) == 0
    assert _stamps(moved / "runs") == before

    other = [s.replace("level_00/final", "level_01/final") for s in transfer]  # other weights: refused
    capsys.readouterr()
    assert main(["find", str(DIGITS), *_sets(other), "--out", "runs/b"]) == 2
    _one_line_error(capsys, "different config", "model.weights", "level_01/final.safetensors")

    shutil.rmtree(moved / "runs" / "a")  # gone from both places: one line naming the key and both
    monkeypatch.chdir(elsewhere)
    capsys.readouterr()
    assert main(["eval", str(moved / "runs" / "b" / "level_01")]) == 2
    _one_line_error(capsys, "model.weights=", "not found", str(moved / "runs" / "a" / "level_00"))


def test_a_matrix_moved_with_its_source_run_resumes_there(tmp_path, monkeypatch, capsys):
    """model.weights and init.source are recorded absolute now; a matrix moved with its source run (and
    every cell's weights) must still resume, through paths.json, and other weights are still refused."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert main(["find", str(DIGITS), *_sets(TINY), "--out", "runs/src"]) == 0
    theta = "model.weights=runs/src/level_00/final.safetensors"
    spec = {"seeds": [0], "targets": {"digits": {"config": str(DIGITS), "set": TINY[:-1] + ["prune.levels=0"]}},
            "baselines": {"dense θ_p": [theta]},
            "sources": {"m_P": {"run": "runs/src", "baseline": "dense θ_p",
                                "set": [theta, "init.mode=mask", "init.map=shared"]}}}
    (work / "spec.yaml").write_text(yaml.safe_dump(spec, allow_unicode=True))
    assert main(["transfer-matrix", "spec.yaml", "--out", "out"]) == 0
    table = (work / "out" / "matrix.csv").read_text()
    before = _stamps(work / "out")

    moved = tmp_path / "elsewhere" / "work"
    shutil.move(work, moved)
    monkeypatch.chdir(moved)
    assert main(["transfer-matrix", "spec.yaml", "--out", "out"]) == 0
    assert _stamps(moved / "out") == before and (moved / "out" / "matrix.csv").read_text() == table

    other = dict(spec, baselines={"dense θ_p": ["model.weights=runs/src/level_01/final.safetensors"]})
    (moved / "spec.yaml").write_text(yaml.safe_dump(other, allow_unicode=True))
    capsys.readouterr()
    assert main(["transfer-matrix", "spec.yaml", "--out", "out"]) == 2
    _one_line_error(capsys, "out/dense__p/digits/seed_0 was started with a different config",
                    "model.weights", "level_01/final.safetensors")


def test_the_place_rule_with_symlinked_data(tmp_path):
    """A data dir that is a symlink (data/voc → /datasets/voc) is recorded resolved; a tree copied with
    the link keeps naming it, a copy that carried the data itself is read there, other data is not the same."""
    from ticketlab.path_keys import located, moved_path, relative_to, same_location

    real = tmp_path / "datasets" / "voc"
    real.mkdir(parents=True)
    run = tmp_path / "work" / "runs" / "x"
    run.mkdir(parents=True)
    (tmp_path / "work" / "data").mkdir()
    (tmp_path / "work" / "data" / "voc").symlink_to(real)
    recorded = str((tmp_path / "work" / "data" / "voc").resolve())
    assert recorded == str(real.resolve())
    relative = relative_to(recorded, run)

    linked = tmp_path / "linked" / "work"  # cp -r keeps the symlink: the moved place does not exist
    shutil.copytree(tmp_path / "work", linked, symlinks=True)
    moved = moved_path(relative, linked / "runs" / "x")
    assert same_location(recorded, moved, str(linked / "data" / "voc"))
    assert located(recorded, moved) == recorded

    carried = tmp_path / "carried"  # the data's whole tree copied along: read from the copy
    shutil.copytree(tmp_path, carried, ignore=shutil.ignore_patterns("carried", "linked"), symlinks=True)
    moved = moved_path(relative_to(recorded, run), carried / "work" / "runs" / "x")
    assert located(recorded, moved) == str(carried / "datasets" / "voc")
    assert same_location(recorded, moved, str(carried / "datasets" / "voc"))
    other = tmp_path / "other"
    other.mkdir()
    assert not same_location(recorded, moved, str(other)) and not same_location(recorded, None, str(other))
