"""Stopping on a signal without losing the level in flight: preemption, a time limit, Ctrl-C.

A SLURM job that is preempted or reaches its time limit gets SIGTERM (or the signal its `--signal`
asks for) some seconds before SIGKILL; Ctrl-C is SIGINT. Inside `stop_on_signals()` the first of
SIGTERM, SIGUSR1 or SIGINT only raises a flag (`StopFlag`): the training loop looks at it after
every step, writes a checkpoint there and raises `Stopped`, and IMP looks at it between levels. A
second signal raises `Stopped` at once, wherever the process is (a write in flight leaves the old
file or the new one: every write is atomic). A command that does not poll the flag (`eval`,
`report`, ...) sets `poll=False` and stops at the first signal. The CLI turns `Stopped` into one
line on stderr and exit status `RESUMABLE` (75, sysexits' EX_TEMPFAIL: "try again later").
"""

from __future__ import annotations

import contextlib
import signal
import threading
from dataclasses import dataclass
from typing import Iterator, Optional

RESUMABLE = 75
SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)


class Stopped(BaseException):
    """Raised where a process stops on a signal. A BaseException, like KeyboardInterrupt, so that no
    `except Exception` on the way up mistakes it for a failure; `run_lock` still releases its lock."""

    def __init__(self, signame: str, where: str = ""):
        super().__init__(signame, where)
        self.signame, self.where = signame, where

    def __str__(self) -> str:
        return f"stopped by {self.signame}" + (f": {self.where}" if self.where else "")


@dataclass
class StopFlag:
    """Set by the first signal; whoever polls it raises `Stopped`. With `poll` False (a command that
    never looks at the flag) the first signal raises `Stopped` at once."""

    signame: Optional[str] = None
    poll: bool = True

    @property
    def requested(self) -> bool:
        return self.signame is not None


@contextlib.contextmanager
def stop_on_signals(poll: bool = True) -> Iterator[StopFlag]:
    """Install the handlers for the block (restoring the previous ones after it); yields the flag.
    Outside the main thread, where Python cannot install handlers, the flag is never raised."""
    flag = StopFlag(poll=poll)
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum: int, frame) -> None:
        name = signal.Signals(signum).name
        if flag.requested or not flag.poll:
            raise Stopped(name)
        flag.signame = name

    previous = {s: signal.signal(s, handler) for s in SIGNALS}
    try:
        yield flag
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


def ignore_signals() -> None:
    """For a process on its way out after `Stopped`: a signal arriving while it prints its line and
    exits changes nothing (without this, the default action would kill it with status 128 + n)."""
    for s in SIGNALS:
        signal.signal(s, signal.SIG_IGN)
