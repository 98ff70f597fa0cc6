"""A run that fills its disk stops with one line, keeps every finished level, and resumes elsewhere.

The disk is real: a tmpfs of a few MiB mounted in a private mount namespace (`unshare`), sized so
that level 0 fits and level 1's `final.safetensors` does not. The run dir is then copied out and
resumed with room to spare; it must end exactly like a run that never ran out of space. The run on
the small disk is a real `python -m ticketlab find` process; the reference and the resumed run are the
same command in the test process (`cli.main`), without a process's seconds of start-up.
"""

import csv
import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from ticketlab.cli import main

ARGS = ["--set", "train.duration=6ep", "--set", "train.checkpoint_every=0it", "--set", "train.eval_every=6ep",
        "--set", "prune.levels=2"]
PAGE = 4096


def find_argv(out: Path) -> list[str]:
    return ["find", "configs/digits_lenet.yaml", *ARGS, "--out", str(out)]


def pages(path: Path) -> int:
    return -(-path.stat().st_size // PAGE) * PAGE


def without_seconds(path: Path) -> dict:
    return {k: v for k, v in json.loads(path.read_text()).items() if k != "seconds"}


def rows(path: Path) -> list[dict]:
    with open(path) as f:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(f)]


@pytest.mark.slow
def test_full_disk_keeps_finished_levels_and_resumes(tmp_path):
    reference = tmp_path / "reference"
    assert main(find_argv(reference)) == 0
    level0, level1 = reference / "level_00", reference / "level_01"
    # room for the run's top files, all of level 0, and level 1's mask + start weights: not its final weights
    fits = [reference / "config.yaml", reference / "summary.csv", *level0.iterdir(),
            level1 / "mask.safetensors", level1 / "rewind.safetensors"]
    size = sum(pages(p) for p in fits) + 16 * PAGE
    assert pages(level1 / "final.safetensors") > 32 * PAGE  # so the margin cannot hold it

    mount, copy, err = tmp_path / "small_disk", tmp_path / "copied", tmp_path / "stderr.txt"
    mount.mkdir()
    run = shlex.join([sys.executable, "-m", "ticketlab", *find_argv(mount / "run")])
    script = (f"mount -t tmpfs -o size={size} tmpfs {mount} && {{ {run} 2>{err}; echo $? >{tmp_path / 'rc'}; }}; "
              f"cp -a {mount / 'run'} {copy}")
    subprocess.run(["unshare", "--map-root-user", "--mount", "sh", "-c", script], check=True)

    assert (tmp_path / "rc").read_text().strip() == "2"
    message = err.read_text().strip()
    assert len(message.splitlines()) == 1 and "Traceback" not in message, message
    assert "no space left on device" in message and "level_01" in message, message
    for name in ("mask.safetensors", "rewind.safetensors", "final.safetensors"):
        assert (copy / "level_00" / name).read_bytes() == (level0 / name).read_bytes(), name
    assert without_seconds(copy / "level_00" / "metrics.json") == without_seconds(level0 / "metrics.json")
    assert not (copy / "level_01" / "metrics.json").exists()
    assert not list(copy.rglob(".tmp-*")), "a half-written temporary was left behind"

    assert main(find_argv(copy)) == 0
    assert rows(copy / "summary.csv") == rows(reference / "summary.csv")
    for level in range(3):
        for name in ("mask.safetensors", "final.safetensors"):
            assert (copy / f"level_{level:02d}" / name).read_bytes() == \
                (reference / f"level_{level:02d}" / name).read_bytes(), (level, name)
