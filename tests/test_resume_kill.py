"""A run killed with SIGKILL in the middle of a level and rerun ends exactly like an uninterrupted run."""

import csv
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

# level 1 checkpoints after 5 of its 30 epochs, and the kill lands in the 25 left
ARGS = ["--set", "train.duration=30ep", "--set", "train.checkpoint_every=5ep",
        "--set", "train.eval_every=10ep", "--set", "prune.levels=2"]


def find(out: Path, args: list[str] = ARGS) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ticketlab", "find", "configs/digits_lenet.yaml", *args,
                             "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


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
def test_sigkill_mid_level_then_resume_matches_uninterrupted(tmp_path):
    assert_killed_in_level_1_resumes_like_reference(tmp_path, ARGS, levels=3)


def assert_killed_in_level_1_resumes_like_reference(tmp_path: Path, args: list[str], levels: int) -> None:
    """SIGKILL `find ... args` once level 1 has a checkpoint; the rerun ends byte-identical to a run
    never interrupted."""
    reference = tmp_path / "reference"
    assert find(reference, args).wait(timeout=600) == 0

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

    rerun = find(killed, args)
    assert rerun.wait(timeout=600) == 0, rerun.stderr.read()
    assert_same_run(killed, reference, levels=levels)


RANDOM_ARGS = ["--set", "train.duration=12ep", "--set", "train.checkpoint_every=1ep",
               "--set", "train.eval_every=4ep", "--set", "prune.levels=4"]
KILLS = 10


def wait_until_started(proc: subprocess.Popen, config: Path, after: float) -> None:
    """Until the process has rewritten config.yaml: it is past its imports and inside the run."""
    deadline = time.time() + 120
    while proc.poll() is None and time.time() < deadline:
        if config.exists() and config.stat().st_mtime >= after:
            return
        time.sleep(0.01)


@pytest.mark.slow
def test_ten_random_sigkills_in_a_row_end_like_an_uninterrupted_run(tmp_path):
    reference = tmp_path / "reference"
    started = time.time() - 1  # mtime granularity
    proc = find(reference, RANDOM_ARGS)
    wait_until_started(proc, reference / "config.yaml", started)
    begun = time.time()
    assert proc.wait(timeout=600) == 0
    work = time.time() - begun  # the run past its imports: the kills' delays add up to less than it

    rng = random.Random(20261123)
    killed = tmp_path / "killed"
    landed = 0
    for _ in range(KILLS):
        started = time.time() - 1  # mtime granularity
        proc = find(killed, RANDOM_ARGS)
        wait_until_started(proc, killed / "config.yaml", started)
        time.sleep(rng.uniform(0.0, 0.9 * work / KILLS))  # anywhere: training, pruning, evaluating, writing
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            landed += 1
        proc.wait()
    assert landed == KILLS, f"only {landed} kills hit a running process; the run finished too early"

    rerun = find(killed, RANDOM_ARGS)
    assert rerun.wait(timeout=600) == 0, rerun.stderr.read()
    assert_same_run(killed, reference, levels=5)
