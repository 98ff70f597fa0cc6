"""A run killed with SIGKILL in the middle of a level and rerun ends exactly like an uninterrupted run.

The killed runs are real `python -m ticketlab find` processes. The rerun that resumes them and the
uninterrupted reference they are compared with run the same command in the test process through
`cli.main`, without the seconds of interpreter and torch start-up a process adds; the reference once
for both tests here (`digits_reference`), just before the first of them, so that the ten kills' delays
are drawn within a working time measured on the machine as it is now.
"""

import csv
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ticketlab.cli import main

CONFIG = "configs/digits_lenet.yaml"
# 5 levels of 12 epochs, a checkpoint after every epoch: the settings of both tests, so that one
# uninterrupted reference serves them
SETS = ["train.duration=12ep", "train.checkpoint_every=1ep", "train.eval_every=4ep", "prune.levels=4"]
ARGS = [a for s in SETS for a in ("--set", s)]
LEVELS = 5


def find(out: Path, args: list[str] = ARGS) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ticketlab", "find", CONFIG, *args,
                             "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def find_here(out: Path, args: list[str] = ARGS) -> float:
    """`ticketlab find CONFIG ARGS --out OUT` run to the end in this process; its seconds."""
    begun = time.time()
    assert main(["find", CONFIG, *args, "--out", str(out)]) == 0
    return time.time() - begun


@pytest.fixture(scope="module")
def digits_reference(tmp_path_factory) -> tuple[Path, float]:
    """The uninterrupted run of ARGS and its working time (seconds, no imports)."""
    reference = tmp_path_factory.mktemp("kill") / "reference"
    return reference, find_here(reference)


def assert_same_run(run: Path, reference: Path, levels: int) -> None:
    """Same summary (timings aside) and byte-identical masks and weights at every level; no temporaries."""
    assert summary_without_timing(run / "summary.csv") == summary_without_timing(reference / "summary.csv")
    for level in range(levels):
        for name in ("mask.safetensors", "final.safetensors", "rewind.safetensors"):
            a = (run / f"level_{level:02d}" / name).read_bytes()
            b = (reference / f"level_{level:02d}" / name).read_bytes()
            assert a == b, (level, name)
    assert not list(run.rglob(".tmp-*"))


def summary_without_timing(path: Path) -> list[dict]:
    with open(path) as f:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(f)]


@pytest.mark.slow
def test_sigkill_mid_level_then_resume_matches_uninterrupted(tmp_path, digits_reference):
    # level 1 checkpoints after 1 of its 12 epochs, and the kill lands in the 11 left
    assert_killed_in_level_1_resumes_like_reference(tmp_path, ARGS, levels=LEVELS, reference=digits_reference[0])


def assert_killed_in_level_1_resumes_like_reference(tmp_path: Path, args: list[str], levels: int,
                                                    reference: Path | None = None) -> None:
    """SIGKILL `find ... args` once level 1 has a checkpoint; the rerun ends byte-identical to a run
    never interrupted (`reference`, a finished run of the same args; run here when not given)."""
    if reference is None:
        reference = tmp_path / "reference"
        find_here(reference, args)

    killed = tmp_path / "killed"
    proc = find(killed, args)
    checkpoint = killed / "level_01" / "checkpoint.safetensors"
    deadline = time.time() + 300
    while not checkpoint.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    # the kill landed inside level 1: its checkpoint exists, its metrics do not
    assert (killed / "level_00" / "metrics.json").is_file()
    assert not (killed / "level_01" / "metrics.json").is_file()

    find_here(killed, args)
    assert_same_run(killed, reference, levels=levels)


KILLS = 10


def wait_until_started(proc: subprocess.Popen, config: Path, after: float) -> None:
    """Until the process has rewritten config.yaml: it is past its imports and inside the run."""
    deadline = time.time() + 120
    while proc.poll() is None and time.time() < deadline:
        if config.exists() and config.stat().st_mtime >= after:
            return
        time.sleep(0.01)


@pytest.mark.slow
def test_ten_random_sigkills_in_a_row_end_like_an_uninterrupted_run(tmp_path, digits_reference):
    reference, work = digits_reference  # work: the run without imports; the kills' delays add up to less

    rng = random.Random(20261123)
    killed = tmp_path / "killed"
    landed = 0
    for _ in range(KILLS):
        started = time.time() - 1  # mtime granularity
        proc = find(killed)
        wait_until_started(proc, killed / "config.yaml", started)
        time.sleep(rng.uniform(0.0, 0.9 * work / KILLS))  # anywhere: training, pruning, evaluating, writing
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            landed += 1
        proc.wait()
    assert landed == KILLS, f"only {landed} kills hit a running process; the run finished too early"

    find_here(killed)
    assert_same_run(killed, reference, levels=LEVELS)
