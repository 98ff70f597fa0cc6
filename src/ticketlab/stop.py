"""Stopping on a signal without losing the level in flight: preemption, a time limit, Ctrl-C.

A SLURM job that is preempted or reaches its time limit gets SIGTERM (or the signal its `--signal`
asks for) some seconds before SIGKILL; Ctrl-C is SIGINT. Inside `stop_on_signals()` the first of
SIGTERM, SIGUSR1 or SIGINT only raises a flag (`StopFlag`): the training loop looks at it after
every step, writes a checkpoint there and raises `Stopped`, and IMP looks at it between levels. A
second signal raises `Stopped` at once, wherever the process is (a write in flight leaves the old
file or the new one: every write is atomic), so that `run_lock` still removes the lock. The CLI
turns `Stopped` into one line on stderr and exit status `RESUMABLE` (75, sysexits' EX_TEMPFAIL: "try
again later").

A command that does not poll the flag (`eval`, `report`, `data synth`, ...; every command while its
arguments are parsed) sets `poll=False`: it holds no lock and has nothing to checkpoint, so the first
signal writes the same line and exits with the same status from the handler itself. Raising there
instead would unwind through whatever runs at that moment, and most of a short command's time is
spent importing torch: an exception inside a half-done import can be swallowed by a library's bare
`except:` and leave a half-imported module that fails later with a traceback (seen with numpy).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
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

    def line(self) -> str:
        """What the user sees on stderr."""
        return f"ticketlab: {self}; rerun the same command to resume"


@dataclass
class StopFlag:
    """Set by the first signal; whoever polls it raises `Stopped`. With `poll` False (a command that
    never looks at the flag) the first signal ends the process at once (`exit_at_once`)."""

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
        if not flag.poll:
            exit_at_once(Stopped(name))
        if flag.requested:
            raise Stopped(name)
        flag.signame = name

    previous = {s: signal.signal(s, handler) for s in SIGNALS}
    try:
        yield flag
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


@contextlib.contextmanager
def nothing_to_checkpoint(flag: Optional[StopFlag]) -> Iterator[None]:
    """A stretch of a polling command that has nothing to checkpoint and that no step boundary ends
    soon (`demo` writing its data set, which a rerun writes again): a signal in it, or one already
    raised, ends the process at once, as in a command that never polls."""
    if flag is None:
        yield
        return
    if flag.requested:
        exit_at_once(Stopped(flag.signame or "a signal"))
    flag.poll = False
    try:
        yield
    finally:
        flag.poll = True


def exit_at_once(stopped: Stopped) -> None:
    """Write the stopped line and end the process with `RESUMABLE`, unwinding nothing (see module doc)
    but the temporaries of atomic writes in flight; os.write and os._exit are safe inside a signal
    handler, where print may not be."""
    atomic = sys.modules.get("ticketlab.atomic")  # not imported yet: no write can be in flight
    remove_in_flight = getattr(atomic, "remove_in_flight", None)  # None while it is being imported
    if remove_in_flight is not None:
        remove_in_flight()
    os.write(2, (stopped.line() + "\n").encode())
    os._exit(RESUMABLE)


def ignore_signals() -> None:
    """For a process on its way out after `Stopped`: a signal arriving while it prints its line and
    exits changes nothing (without this, the default action would kill it with status 128 + n)."""
    for s in SIGNALS:
        signal.signal(s, signal.SIG_IGN)
