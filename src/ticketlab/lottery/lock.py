"""One writer per run directory: `RUN_DIR/.lock`, so two `find`s (or a `find` and a `branch`) never
interleave their writes into the same run.

Two processes writing one run dir would each believe they own its levels; the files stay whole
(every write is atomic) but which level came from which process is anyone's guess, and a second
`find` deletes the first one's temporaries. So whoever writes takes the lock first:

- taking it is an exclusive create (`O_CREAT | O_EXCL`) of `RUN_DIR/.lock` holding JSON
  {pid, host, started, token, pid_start}; if it exists, the second process stops with one line
  naming the holder;
- a lock is *stale* when it was taken on this host and its process is gone (`os.kill(pid, 0)` raises
  `ProcessLookupError`, or the pid now belongs to a newer process: `pid_start`, the start time from
  `/proc`, differs). A stale lock is taken over by replacing the file atomically, under an
  exclusive `flock` on the run dir itself that the kernel drops if its holder dies: every taker
  re-reads the lock under it and replaces it only if it is still the stale one it saw, so of two
  processes racing for one stale lock exactly one wins and the other sees a live holder;
- it is released (deleted, if it is still ours) on leaving the `with` block, exceptions and Ctrl-C
  included. A SIGKILLed process leaves it behind; the next run on the same host takes it over.
- a lock taken on another host is never taken over: its pid means nothing here. The message says
  which file to delete once that process is known to be gone.

POSIX only (flock, `os.kill(pid, 0)`), as is the rest of the run-dir machinery.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import socket
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Iterator, Optional

from ticketlab.errors import TicketlabError

LOCK_NAME = ".lock"
_READ_RETRIES = 20  # a lock just created with O_EXCL is empty until its creator has written it
_READ_PAUSE_S = 0.05
_TAKEOVER_ATTEMPTS = 5


def _process_start(pid: int) -> Optional[str]:
    """The start time of `pid` in clock ticks since boot (Linux /proc), to tell a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None  # field 22 of stat(5); fields here start at 3


def _record() -> dict[str, Any]:
    pid = os.getpid()
    return {
        "pid": pid,
        "host": socket.gethostname(),
        "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "token": uuid.uuid4().hex,
        "pid_start": _process_start(pid),
    }


def _encode(record: dict[str, Any]) -> bytes:
    return (json.dumps(record, indent=1) + "\n").encode("utf-8")


def _create(lock: Path, data: bytes) -> bool:
    """Create `lock` holding `data` if no lock exists; False if one does."""
    try:
        fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    try:
        os.write(fd, data)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        lock.unlink(missing_ok=True)
        raise
    os.close(fd)
    return True


def _replace(lock: Path, data: bytes) -> None:
    """Overwrite `lock` with `data` in one step: readers see the old holder or the new one."""
    fd, tmp = tempfile.mkstemp(prefix=LOCK_NAME + ".takeover.", dir=lock.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, lock)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read(lock: Path) -> Optional[tuple[bytes, dict[str, Any]]]:
    """The lock's bytes and parsed record; None when the lock has gone (released meanwhile)."""
    for attempt in range(_READ_RETRIES):
        try:
            raw = lock.read_bytes()
        except FileNotFoundError:
            return None
        try:
            record = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            record = None
        if isinstance(record, dict) and isinstance(record.get("pid"), int) and isinstance(record.get("host"), str):
            return raw, record
        if attempt + 1 < _READ_RETRIES:
            time.sleep(_READ_PAUSE_S)  # maybe being written right now: look again
    raise TicketlabError(f"{lock}: unreadable lock file (expected JSON with pid and host); if no ticketlab "
                         "process is using this run directory, delete it and rerun")


def _alive(record: dict[str, Any]) -> bool:
    """Whether the process that wrote `record` (taken on this host) still runs."""
    pid = record["pid"]
    if pid <= 0:
        return False
    if pid == os.getpid():
        # This very process (a nested lock), or an earlier one that had our pid (a restarted container).
        return record.get("pid_start") is None or record.get("pid_start") == _process_start(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by another user
    recorded, now = record.get("pid_start"), _process_start(pid)
    return recorded is None or now is None or recorded == now


@contextlib.contextmanager
def _dir_flock(directory: Path) -> Iterator[None]:
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing drops the flock


def _busy(run_dir: Path, lock: Path, holder: dict[str, Any], here: str) -> TicketlabError:
    who = f"{run_dir} is in use by pid {holder['pid']} on {holder['host']} since {holder.get('started', '?')}"
    if holder["host"] != here:
        return TicketlabError(f"{who}; wait for it or, if that process is gone, delete {lock} "
                              f"(a lock taken on another host is never taken over automatically)")
    if holder["pid"] == os.getpid():
        return TicketlabError(f"{who}; this process already holds it (nested run_lock)")
    return TicketlabError(f"{who}; wait for it or, if that process is gone, rerun")


def acquire(run_dir: Path) -> tuple[Path, bytes]:
    """Take `run_dir`'s lock (creating the directory); returns the lock path and what we wrote."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = run_dir / LOCK_NAME
    mine = _encode(_record())
    here = socket.gethostname()
    for _ in range(_TAKEOVER_ATTEMPTS):
        if _create(lock, mine):
            return lock, mine
        seen = _read(lock)
        if seen is None:
            continue  # released between our create and our read: try again
        raw, holder = seen
        if holder["host"] != here or _alive(holder):
            raise _busy(run_dir, lock, holder, here)
        with _dir_flock(run_dir):
            try:
                current = lock.read_bytes()
            except FileNotFoundError:
                continue
            if current == raw:  # still the stale lock we judged: nobody took it over before us
                _replace(lock, mine)
                return lock, mine
        # someone else took it over (or released it) first: look at the lock again
    raise TicketlabError(f"{lock}: could not take the lock (it kept changing hands); rerun")


def release(lock: Path, mine: bytes) -> None:
    """Delete `lock` if it is still the one we wrote (never another process's)."""
    with contextlib.suppress(FileNotFoundError):
        if lock.read_bytes() == mine:
            lock.unlink()


@contextlib.contextmanager
def run_lock(run_dir: str | os.PathLike) -> Iterator[Path]:
    """Hold `RUN_DIR/.lock` for the duration of the block; yields the lock's path."""
    lock, mine = acquire(Path(run_dir))
    owner = os.getpid()
    try:
        yield lock
    finally:
        if os.getpid() == owner:  # a forked child unwinding through here must not release it
            release(lock, mine)
