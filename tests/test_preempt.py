"""Preemption: SIGTERM, SIGUSR1 or SIGINT make `find` checkpoint at the next step boundary and exit
with the resumable status and one line on stderr, leaving no lock; several in a row, a second signal
landing while the first is being handled included, and the rerun ends byte for byte like a run that
was never stopped (real signals to a real `ticketlab find` process; the reference and the rerun run
the same command in the test process, without a process's seconds of start-up)."""

from __future__ import annotations

import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_resume_kill import assert_same_run
from ticketlab.cli import main
from ticketlab.config import load_config
from ticketlab.lottery.imp import run_imp
from ticketlab.stop import RESUMABLE

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "digits_lenet.yaml"
SET = ["train.duration=10ep", "train.checkpoint_every=3ep", "train.eval_every=5ep", "prune.levels=3"]
ARGS = ["find", str(CONFIG), *[a for s in SET for a in ("--set", s)]]
LINE = re.compile(r"ticketlab: stopped by SIG(TERM|USR1|INT)"  # where it stopped; a second signal: at once
                  r"(: \S+ (checkpointed at step \d+ of \d+|before level \d+))?; rerun the same command to resume\n")


def wait_until_inside(proc: subprocess.Popen, config: Path) -> None:
    """Until the process has rewritten config.yaml (its handlers are installed, it is inside the run);
    compared by mtime with the file the previous process left, which may be less than a second old."""
    before = config.stat().st_mtime_ns if config.exists() else None
    deadline = time.time() + 120
    while proc.poll() is None and time.time() < deadline:
        if config.exists() and config.stat().st_mtime_ns != before:
            return
        time.sleep(0.01)


def find(out: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ticketlab", *ARGS, "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT)


@pytest.mark.slow
def test_random_signals_checkpoint_exit_resumable_and_the_rerun_matches(tmp_path):
    reference = tmp_path / "reference"
    run_imp(load_config(CONFIG, SET), reference, log=lambda s: None)

    rng = random.Random(20261201)
    stopped = tmp_path / "stopped"
    signals = [signal.SIGUSR1, signal.SIGINT, signal.SIGTERM]
    landed = 0
    for i, sig in enumerate(signals):
        proc = find(stopped)
        wait_until_inside(proc, stopped / "config.yaml")
        time.sleep(rng.uniform(0.0, 1.0))
        if proc.poll() is not None:
            break
        proc.send_signal(sig)
        if i == len(signals) - 1:  # a second signal while the first is being handled: stop at once
            time.sleep(rng.uniform(0.0, 0.05))
            proc.send_signal(sig)
        status, err = proc.wait(timeout=120), proc.stderr.read()
        if status == 0:  # the run had finished; the signal came while it was exiting
            break
        assert status == RESUMABLE, err
        assert LINE.fullmatch(err), err  # one line, naming the signal and what was kept
        assert not (stopped / ".lock").exists()
        landed += 1
    assert landed >= 2, "the run finished before the signals; lengthen it"

    assert main([*ARGS, "--out", str(stopped)]) == 0  # the rerun
    assert_same_run(stopped, reference, levels=4)


def test_a_command_that_does_not_train_stops_at_the_first_signal_with_one_line(tmp_path):
    out = tmp_path / "synth"
    proc = subprocess.Popen([sys.executable, "-m", "ticketlab", "data", "synth", "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    deadline = time.time() + 120
    while proc.poll() is None and not any(out.rglob("*.png")) and time.time() < deadline:
        time.sleep(0.02)  # until it is writing images
    proc.send_signal(signal.SIGINT)
    status, err = proc.wait(timeout=60), proc.stderr.read()
    assert status == RESUMABLE, err
    assert re.fullmatch(r"ticketlab: stopped by SIGINT; rerun the same command to resume\n", err), err
