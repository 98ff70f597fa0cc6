"""The run-dir lock: one writer per run dir, stale locks of dead processes taken over by exactly one
taker, locks of other hosts left alone, and the lock gone after every way out of the block."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from ticketlab.config import load_config
from ticketlab.errors import TicketlabError
from ticketlab.lottery.branches import run_branch
from ticketlab.lottery.imp import run_imp
from ticketlab.lottery.lock import LOCK_NAME, run_lock

# A process that takes the lock on argv[1], says so, then waits for its stdin to close (or a "go"
# line first, when argv[2] == "race": it then reports whether it won and holds until stdin closes).
HOLDER = r"""
import sys
from ticketlab.errors import TicketlabError
from ticketlab.lottery.lock import run_lock
if len(sys.argv) > 2:
    print("ready", flush=True)
    sys.stdin.readline()
try:
    with run_lock(sys.argv[1]):
        print("won", flush=True)
        sys.stdin.read()
except TicketlabError as e:
    print("lost " + str(e), flush=True)
"""


def start_holder(run_dir: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", HOLDER, str(run_dir), *extra], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


def write_lock(run_dir: Path, pid: int, host: str) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = run_dir / LOCK_NAME
    lock.write_text(json.dumps({"pid": pid, "host": host, "started": "2020-01-01T00:00:00+00:00"}))
    return lock


def test_second_holder_refused_then_sigkilled_lock_taken_over(tmp_path):
    run_dir = tmp_path / "run"
    holder = start_holder(run_dir)
    try:
        assert holder.stdout.readline().strip() == "won"
        with pytest.raises(TicketlabError) as err:
            with run_lock(run_dir):
                pass
        msg = str(err.value)
        assert "\n" not in msg
        assert msg.startswith(f"{run_dir} is in use by pid {holder.pid} on {socket.gethostname()} since ")
        assert msg.endswith("wait for it or, if that process is gone, rerun")
        # The CLI says the same in one line, exit status 2, and leaves the holder's lock alone.
        cli = subprocess.run([sys.executable, "-m", "ticketlab", "find", "configs/digits_lenet.yaml",
                              "--out", str(run_dir)], capture_output=True, text=True)
        assert cli.returncode == 2, cli.stderr
        assert cli.stderr.strip() == f"ticketlab: error: {msg}"
        assert json.loads((run_dir / LOCK_NAME).read_text())["pid"] == holder.pid
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # SIGKILL ran no cleanup: the lock is still there, naming a dead process, and is taken over.
    assert json.loads((run_dir / LOCK_NAME).read_text())["pid"] == holder.pid
    with run_lock(run_dir) as lock:
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert not (run_dir / LOCK_NAME).exists()


def test_stale_lock_of_a_dead_pid_is_taken_over(tmp_path):
    run_dir = tmp_path / "run"
    write_lock(run_dir, dead_pid(), socket.gethostname())
    with run_lock(run_dir) as lock:
        record = json.loads(lock.read_text())
        assert (record["pid"], record["host"]) == (os.getpid(), socket.gethostname())
    assert not lock.exists()


def test_lock_of_another_host_is_never_taken_over(tmp_path):
    run_dir = tmp_path / "run"
    lock = write_lock(run_dir, dead_pid(), "elsewhere.example")
    before = lock.read_bytes()
    with pytest.raises(TicketlabError, match=r"in use by pid \d+ on elsewhere\.example since .*another host"):
        with run_lock(run_dir):
            pass
    assert lock.read_bytes() == before


def test_unreadable_lock_is_reported_not_taken(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / LOCK_NAME).write_text("{not json")
    with pytest.raises(TicketlabError, match=r"\.lock: unreadable lock file"):
        with run_lock(run_dir):
            pass


def test_racing_takeovers_of_one_stale_lock_have_one_winner(tmp_path):
    run_dir = tmp_path / "run"
    write_lock(run_dir, dead_pid(), socket.gethostname())
    racers = [start_holder(run_dir, "race") for _ in range(4)]
    try:
        assert all(r.stdout.readline().strip() == "ready" for r in racers)
        for r in racers:  # release them all together
            r.stdin.write("go\n")
            r.stdin.flush()
        outcomes = [r.stdout.readline().strip() for r in racers]
    finally:
        for r in racers:
            r.stdin.close()
            r.wait(timeout=60)
    winners = [r.pid for r, o in zip(racers, outcomes) if o == "won"]
    assert len(winners) == 1, outcomes
    losers = [o for o in outcomes if o != "won"]
    assert all(o.startswith(f"lost {run_dir} is in use by pid {winners[0]} ") for o in losers), outcomes
    assert not (run_dir / LOCK_NAME).exists()  # the winner released it when its stdin closed


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_released_on_exception_and_interrupt(tmp_path, exc):
    run_dir = tmp_path / "run"
    with pytest.raises(exc):
        with run_lock(run_dir) as lock:
            assert lock.is_file()
            raise exc()
    assert not (run_dir / LOCK_NAME).exists()
    with run_lock(run_dir):  # and can be taken again at once
        pass


def test_nested_lock_in_one_process_is_refused(tmp_path):
    with run_lock(tmp_path / "run"):
        with pytest.raises(TicketlabError, match="this process already holds it"):
            with run_lock(tmp_path / "run"):
                pass
        assert (tmp_path / "run" / LOCK_NAME).is_file()  # the refused inner call did not release it


def test_digits_run_and_branch_leave_no_lock(tmp_path):
    out = tmp_path / "run"
    cfg = load_config("configs/digits_lenet.yaml", ["train.duration=1ep", "prune.levels=1"])
    rows = run_imp(cfg, out, log=lambda s: None)
    assert [r["level"] for r in rows] == [0, 1]
    assert not (out / LOCK_NAME).exists()
    branch_dir, metrics = run_branch(out / "level_01", "reinit")
    assert (branch_dir / "metrics.json").is_file() and metrics["branch"] == "reinit"
    assert not (out / LOCK_NAME).exists()
    # A leftover lock of a killed run does not stop the resume.
    write_lock(out, dead_pid(), socket.gethostname())
    assert [r["level"] for r in run_imp(cfg, out, log=lambda s: None)] == [0, 1]
    assert not (out / LOCK_NAME).exists()
