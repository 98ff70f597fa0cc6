"""A run records where its data is (issue: `report` / `eval` from another directory read the wrong data
or none): `find` writes a relative data.root into config.yaml as the absolute path it named where
`find` ran, so the run's commands read the same data from any directory; a resume from the same
directory with the same relative config is still the same run. A run dir written before (its
config.yaml holding the relative path) is read from the current directory, and where the data is
not there each command says so in one line naming the key and the path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from ticketlab.cli import main
from ticketlab.config import Config, DataConfig
from ticketlab.errors import TicketlabError
from ticketlab.analysis.runs import group_series, load_run
from ticketlab.path_keys import recorded_paths
from ticketlab.rundir import locate_paths

DIGITS = Path(__file__).resolve().parents[1] / "configs" / "digits_lenet.yaml"
SET = ["data.format=imagefolder", "data.root=data/imgs", "data.image_size=8", "model.width=0.1",
       "train.duration=4it", "train.eval_every=4it", "train.checkpoint_every=4it", "train.batch_size=4", "prune.levels=1"]


def _images(root: Path) -> None:
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in ("a", "b"):
            (root / split / c).mkdir(parents=True)
            for i in range(4):
                Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(root / split / c / f"{i}.png")


def _find(run: Path) -> int:
    return main(["find", str(DIGITS), *[a for s in SET for a in ("--set", s)], "--out", str(run)])


def _accuracy(out: str) -> float:
    return float(next(line for line in out.splitlines() if line.startswith("accuracy: ")).split(": ")[1])


@pytest.fixture(scope="module")
def started(tmp_path_factory) -> tuple[Path, Path]:
    """A run found in `launch/` with data.root=data/imgs (relative), and another directory."""
    base = tmp_path_factory.mktemp("anywhere")
    launch, elsewhere = base / "launch", base / "elsewhere"
    _images(launch / "data" / "imgs")
    elsewhere.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(launch)
        assert _find(base / "run") == 0
    return base, launch


def test_the_run_records_its_data_and_reads_it_from_anywhere(started, monkeypatch, capsys):
    base, launch = started
    run = base / "run"
    recorded = yaml.safe_load((run / "config.yaml").read_text())["data"]["root"]
    assert recorded == str((launch / "data" / "imgs").resolve())
    metrics = json.loads((run / "level_01" / "metrics.json").read_text())

    monkeypatch.chdir(base / "elsewhere")  # no data/imgs here
    capsys.readouterr()
    assert main(["eval", str(run / "level_01")]) == 0
    assert _accuracy(capsys.readouterr().out) == pytest.approx(metrics["accuracy"], abs=1e-6)
    assert main(["report", str(run), "--out", "report"]) == 0

    monkeypatch.chdir(launch)  # the same command again, relative root and all: the same run, resumed
    assert _find(run) == 0 and "different config" not in capsys.readouterr().err


def test_an_old_run_dir_reads_its_relative_root_from_here_or_says_where_it_looked(started, monkeypatch, capsys):
    base, launch = started
    run = base / "run"
    old = base / "old_run"
    old.mkdir()
    for p in run.rglob("*"):  # the same run, as a run dir written before roots (and paths.json) were recorded
        if p.is_file() and p.name != "paths.json":
            (old / p.relative_to(run)).parent.mkdir(parents=True, exist_ok=True)
            (old / p.relative_to(run)).write_bytes(p.read_bytes())
    config = yaml.safe_load((old / "config.yaml").read_text())
    config["data"]["root"] = "data/imgs"
    (old / "config.yaml").write_text(yaml.safe_dump(config))

    monkeypatch.chdir(launch)
    capsys.readouterr()
    assert main(["eval", str(old / "level_01")]) == 0
    monkeypatch.chdir(base / "elsewhere")
    capsys.readouterr()
    assert main(["eval", str(old / "level_01")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert f"{old / 'config.yaml'}: data.root=data/imgs" in err and str(base / "elsewhere" / "data" / "imgs") in err

    monkeypatch.chdir(launch)  # an old seed and a new one of the same data are one series in a report
    series = group_series([load_run(old), load_run(run)])
    assert len(series) == 1 and len(series[0].runs) == 2
    monkeypatch.chdir(base / "elsewhere")  # from elsewhere the relative root names other data
    assert len(group_series([load_run(old), load_run(run)])) == 2


def test_locate_data_names_a_recorded_root_that_is_gone(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d").mkdir()
    relative = Config(data=DataConfig(format="imagefolder", root="d"))
    assert recorded_paths(relative).data.root == str(tmp_path / "d")
    assert recorded_paths(Config()).data.root is None  # digits: no root to record
    assert locate_paths(relative, Path("c.yaml"), {}).data.root == str(tmp_path / "d")
    gone = Config(data=DataConfig(format="imagefolder", root=str(tmp_path / "gone")))
    with pytest.raises(TicketlabError, match=rf"c.yaml: data.root={tmp_path / 'gone'}: not found"):
        locate_paths(gone, Path("c.yaml"), {})
