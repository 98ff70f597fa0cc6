"""SIGINT and SIGTERM at random (seeded) moments to every long-running command (issue 18, item 4).

Each command runs as a real `ticketlab` process on a tiny input; once it has installed its signal
handlers (the kernel's SigCgt mask shows SIGTERM caught) it gets SIGINT or SIGTERM after a seeded
random delay. What a user must see: exit status 75 (README "When things go wrong": stopped, rerun to
resume), exactly one line on stderr and no traceback, no `.lock` (nor temporary file) left anywhere
under what it wrote, and the same command run again finishes (exit 0); where the command resumes
(`find`, `branch`, `controls`, `sweep`, `transfer-matrix`, `data synth`, `data synth-crops`) the
rerun's files are byte for byte those of a run never stopped. `demo` trains a Faster R-CNN for minutes, so it is only
stopped (it is `data synth` + `find` + `report`, each covered here), and so is `sweep --workers 2`,
which runs its cell as a process of its own that the signal to `sweep` must reach (its rerun would
resume the cell as `sweep`'s does, at the cost of the process start-ups again).
`tests/test_preempt.py` covers several signals in a row on one `find`, a second signal while the
first is handled included.

The references run in this process through `cli.main` (no interpreter start-up); if a command ends
before its signal lands, it is run again with a shorter delay.
"""

from __future__ import annotations

import random
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import pytest
import yaml

from test_resume_kill import assert_same_run
from ticketlab.cli import main
from ticketlab.stop import RESUMABLE

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "configs" / "digits_lenet.yaml"
SET = ["train.duration=12it", "train.eval_every=12it", "train.checkpoint_every=3it", "prune.levels=1"]
TINY = [a for s in SET for a in ("--set", s)]
SYNTH = ["--n-train", "4", "--n-val", "1", "--image-size", "64", "--classes", "[disc, square]", "--imbalance", "1",
         "--keypoints", "false"]
LINE = re.compile(r"ticketlab: stopped by SIG(INT|TERM)(: [^\n]+)?; rerun the same command to resume\n")
TRIES = 4
LONGEST = 1.0  # s: the longest delay of a signal (the tiny commands here train for about a second)


def _catches_sigterm(pid: int) -> bool:
    """Whether process `pid` has a SIGTERM handler installed (Python installs none of its own, so
    this is `stop_on_signals` in place)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    caught = next(line for line in status.splitlines() if line.startswith("SigCgt:")).split()[1]
    return bool(int(caught, 16) >> (signal.SIGTERM - 1) & 1)


def _signalled(argv: list[str], rng: random.Random, longest: float, marker: Optional[Path]) -> tuple[int, str, str]:
    """Run `ticketlab ARGV` and send SIGINT or SIGTERM at a random moment: a random delay after its
    handlers are in place (most of a short command's time is imports), or, for a coin's half of the
    draws, after `marker` appears (the command is into its real work). (exit status, signal name,
    stderr); tried again with shorter delays while the command finishes before the signal."""
    for _ in range(TRIES):
        sig = rng.choice([signal.SIGINT, signal.SIGTERM])
        delay, into_work = rng.uniform(0.0, longest), marker is not None and rng.random() < 0.5
        proc = subprocess.Popen([sys.executable, "-m", "ticketlab", *argv], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True, cwd=ROOT)
        deadline = time.time() + 120
        while proc.poll() is None and not _catches_sigterm(proc.pid) and time.time() < deadline:
            time.sleep(0.005)
        while into_work and proc.poll() is None and not marker.exists() and time.time() < deadline:
            time.sleep(0.005)
        time.sleep(delay)
        if proc.poll() is None:
            proc.send_signal(sig)
        status, err = proc.wait(timeout=300), proc.stderr.read()
        if status != 0:
            return status, sig.name, err
        longest /= 3  # it finished first: aim earlier
    raise AssertionError(f"{argv} finished before each of {TRIES} signals; lengthen it")


def _files(root: Path, pattern: str) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.glob(pattern)) if p.is_file()}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    """A finished tiny digits run (also the reference of `find` and `sweep`), two copies of it (one
    for the references of the branch commands, one for the stopped ones), a study and a matrix spec."""
    base = tmp_path_factory.mktemp("signals")
    run = base / "run"
    assert main(["find", str(DIGITS), *TINY, "--out", str(run)]) == 0
    for name in ("reference", "stopped"):
        shutil.copytree(run, base / name)
    study = base / "study.yaml"
    study.write_text(yaml.safe_dump({"config": str(DIGITS), "set": SET, "grid": {"train.seed": [0]}}))
    spec = base / "spec.yaml"
    spec.write_text(yaml.safe_dump({"seeds": [0], "targets": {"digits": {"config": str(DIGITS), "set": [
        *SET[:3], "prune.levels=0"]}}, "sources": {"ticket": [f"init.source={run / 'level_01'}", "init.map=shared"]}}))
    return {"base": base, "run": run, "reference": base / "reference", "stopped": base / "stopped",
            "study": study, "spec": spec}


def _same_tree(pattern: str) -> Callable[[Path, Path], None]:
    def check(out: Path, reference: Path) -> None:
        assert _files(out, pattern) == _files(reference, pattern), f"{out} differs from {reference} ({pattern})"
    return check


def _same_cell(out: Path, reference: Path) -> None:
    (cell,) = (out / "cells").iterdir()
    assert_same_run(cell, reference, levels=2)


@dataclass(frozen=True)
class Case:
    """One command: its argv ({out}: where it writes, {run}: the run dir it reads or branches), a
    path that appears once it is into its real work, whether the test reruns it, and,
    if it resumes, how its rerun must match an uninterrupted run: check(rerun's dir, reference's dir),
    the reference being the module's finished run ("world") or one run here ("here")."""

    argv: list[str]
    marker: Optional[str] = None
    check: Optional[Callable[[Path, Path], None]] = None
    reference: str = "here"
    rerun: bool = True


LEVEL = "{run}/level_01"
COMMANDS = {
    "find": Case(["find", str(DIGITS), *TINY, "--out", "{out}"], "{out}/level_00/mask.safetensors",
                 lambda o, r: assert_same_run(o, r, 2), "world"),
    "sweep": Case(["sweep", "{study}", "--out", "{out}"], "{out}/cells", _same_cell, "world"),
    "sweep --workers": Case(["sweep", "{study}", "--out", "{out}", "--workers", "2"], "{out}/cells",
                            rerun=False),  # the cell is a process of its own, which the signal must reach
    "transfer-matrix": Case(["transfer-matrix", "{spec}", "--out", "{out}"],
                            "{out}/dense/digits/seed_0/level_00/mask.safetensors",
                            _same_tree("*/digits/seed_0/level_00/*.safetensors")),
    "branch": Case(["branch", LEVEL, "reinit"], LEVEL + "/branch_reinit/mask.safetensors",
                   _same_tree("level_01/branch_reinit/*.safetensors")),
    "controls": Case(["controls", "{run}", "--levels", "1", "--only", "complement"],
                     LEVEL + "/branch_complement/mask.safetensors",
                     _same_tree("level_01/branch_complement/*.safetensors")),
    "data synth": Case(["data", "synth", "--out", "{out}", *SYNTH], "{out}/images", _same_tree("**/*")),
    "data synth-crops": Case(["data", "synth-crops", "--out", "{out}", *SYNTH, "--min-area", "16"],
                             "{out}/train", _same_tree("**/*")),
    "eval": Case(["eval", LEVEL]),
    "export": Case(["export", LEVEL, "--format", "state_dict", "--out", "{out}/ticket.safetensors"]),
    "report": Case(["report", "{run}", "--out", "{out}"], "{out}"),
    "demo": Case(["demo", "--out", "{out}"], "{out}/data/images", rerun=False),
}


@pytest.mark.slow
@pytest.mark.parametrize("command", COMMANDS)
def test_a_signal_at_a_random_moment_stops_in_one_line_and_the_rerun_matches(world, tmp_path, command):
    case = COMMANDS[command]
    rng = random.Random(f"signals {command}")  # seeded per command: each draws the same moments every run
    writes_run = command in ("branch", "controls")

    def fill(template: str, out: Path, run: Path) -> str:
        return template.format(out=out, run=run, study=world["study"], spec=world["spec"])

    out, run = tmp_path / "out", (world["stopped"] if writes_run else world["run"])
    argv = [fill(a, out, run) for a in case.argv]
    marker = Path(fill(case.marker, out, run)) if case.marker else None

    status, sig, err = _signalled(argv, rng, LONGEST, marker)
    assert status == RESUMABLE, err
    assert LINE.fullmatch(err) and sig in err, err  # one line, naming the signal; no traceback
    left = [".lock", "*.pid", ".tmp-*"]  # no lock, no launcher pid file, no temporary of an atomic write
    assert not [p for root in (out, run) if root.exists() for pattern in left for p in root.rglob(pattern)]

    if not case.rerun:  # demo: minutes of training; sweep --workers: its cell resumes as `sweep`'s does
        return
    assert main(argv) == 0, f"the rerun of {command} failed"
    if case.check is None:
        return
    if case.reference == "world":
        case.check(out, world["run"])
        return
    ref_out, ref_run = tmp_path / "reference", world["reference"]
    assert main([fill(a, ref_out, ref_run) for a in case.argv]) == 0
    case.check(run if writes_run else out, ref_run if writes_run else ref_out)


def test_a_signal_mid_write_leaves_the_old_file_and_no_temporary(tmp_path):
    """The moment the random signals above only sometimes hit, made certain: a command with nothing to
    checkpoint gets SIGTERM while an atomic write has its temporary written but not yet renamed (the
    signal is sent from inside fsync). It ends at once with 75 and its line; the file keeps its old
    content and the temporary is gone."""
    target = tmp_path / "crops.json"
    target.write_text("old\n")
    code = "\n".join([
        "import os, signal, sys",
        "from ticketlab import atomic",
        "from ticketlab.stop import stop_on_signals",
        "fsync = os.fsync",
        "os.fsync = lambda fd: (fsync(fd), os.kill(os.getpid(), signal.SIGTERM))",
        "with stop_on_signals(poll=False):",
        "    atomic.atomic_write_text(sys.argv[1], 'new')",
        "    print('not stopped')",
    ])
    proc = subprocess.run([sys.executable, "-c", code, str(target)], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)
    assert proc.returncode == RESUMABLE and LINE.fullmatch(proc.stderr), proc.stderr
    assert proc.stdout == "" and target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["crops.json"]
