"""Run the units of a study or transfer matrix side by side: N processes on this machine, or a SLURM
job array, both through submitit.

A unit is one command, `ticketlab sweep STUDY --out DIR --cell NAME` (a cell, or a shared dense
level): its own process, under `torchrun --standalone` when it gets more than one GPU. Shared dense
levels run first, as one wave, then the cells. Each unit is one submitit job (`CellJob`); on SLURM
a wave is one job array (`--array …%workers`), on this machine (`LocalExecutor`) at most `workers`
jobs run at once, each seeing its own GPU(s) through CUDA_VISIBLE_DEVICES.

Preemption and time limits: submitit catches the signal SLURM sends `signal_delay_s` before the end
(USR2) and calls `CellJob.checkpoint`, which passes SIGTERM on to the unit: it checkpoints at the
next step boundary and exits 75; the job is then requeued and resumes there. A signal to the
launching command itself (SIGTERM, Ctrl-C) on this machine starts no further unit and sends SIGTERM
to each running unit (its `CellJob` keeps the unit's process id beside its log; submitit's own
cancel would interrupt only its controller); once they have checkpointed, the command stops with
`Stopped` (exit 75), and a rerun resumes every cell. A unit that fails is reported with its last
stderr line and is not retried; one whose run dir another launcher holds fails on the lock, so no
cell is trained twice.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from ticketlab.atomic import atomic_write_text
from ticketlab.config import option
from ticketlab.errors import TicketlabError
from ticketlab.lottery.shared import DenseGroup
from ticketlab.rundir import RunDir
from ticketlab.stop import RESUMABLE, StopFlag, Stopped

POLL_S = 0.5


@dataclass
class LaunchConfig:
    """Where the units of a study run (`launch:` in the study or matrix file, or the command line)."""

    workers: int = option(1, "units run at once: local processes, or the SLURM array's parallelism")
    slurm: bool = option(False, "submit the units to SLURM as job arrays (through submitit) instead of running "
                         "them here")
    partition: Optional[str] = option(None, "SLURM partition")
    time_min: int = option(1440, "time limit of one task in minutes (a unit that runs longer is checkpointed "
                           "and requeued)")
    gpus_per_cell: int = option(0, "GPUs per unit; more than 1 runs the unit under torchrun; 0 = one per local "
                                "worker where there are GPUs, none on SLURM")
    cpus_per_cell: int = option(8, "CPUs per SLURM task")
    signal_delay_s: int = option(120, "seconds before the time limit SLURM signals a task to checkpoint")
    setup: list[str] = option([], "shell lines each SLURM task runs first (module load …, source a venv)")

    def __post_init__(self) -> None:
        for key in ("workers", "time_min", "cpus_per_cell"):
            if getattr(self, key) < 1:
                raise TicketlabError(f"launch.{key} (--{key.replace('_', '-')}): expected 1 or more, "
                                     f"got {getattr(self, key)}")
        if self.gpus_per_cell < 0 or self.signal_delay_s < 0:
            raise TicketlabError("launch.gpus_per_cell and launch.signal_delay_s: expected 0 or more")


@dataclass(frozen=True)
class Unit:
    name: str
    argv: list[str]   # the ticketlab arguments after `ticketlab`
    log: Path         # the unit's stderr, appended to across requeues


def unit_command(argv: list[str], gpus: int) -> list[str]:
    base = ["-m", "ticketlab", *argv]
    if gpus > 1:
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}", *base]
    return [sys.executable, *base]


class CellJob:
    """A submitit job that runs one unit as a child process and survives preemption (see module doc).

    submitit calls `checkpoint` in its signal handler, interrupting `__call__`; both only poll the
    child (never block in `wait`), so the handler cannot deadlock on the child's wait lock."""

    def __init__(self, command: list[str], log: Path):
        self.command, self.log = command, Path(log)
        self._child: Optional[subprocess.Popen] = None

    def __getstate__(self) -> dict:
        return {"command": self.command, "log": self.log, "_child": None}

    def __call__(self) -> str:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "a") as err:
            self._child = subprocess.Popen(self.command, stdout=err, stderr=err)
            atomic_write_text(pid_file(self.log), str(self._child.pid))  # for the launcher to stop it (module doc)
            try:
                status = self._wait()
            finally:
                pid_file(self.log).unlink(missing_ok=True)
        if status == 0:
            return "done"
        last = _last_line(self.log)
        if status == RESUMABLE:
            raise TicketlabError(f"stopped by a signal, resumable: {last}")
        raise TicketlabError(f"exit status {status}: {last}")

    def _wait(self) -> int:
        assert self._child is not None
        while (status := self._child.poll()) is None:
            time.sleep(POLL_S)
        return status

    def checkpoint(self, *args: Any, **kwargs: Any):
        import submitit

        if self._child is not None and self._child.poll() is None:
            self._child.send_signal(signal.SIGTERM)  # checkpoint at the next step boundary, exit 75
            self._wait()
        return submitit.helpers.DelayedSubmission(CellJob(self.command, self.log))


def pid_file(log: Path) -> Path:
    """Where a running unit's `CellJob` keeps the unit's process id: beside its log."""
    return log.with_suffix(".pid")


def _stop_unit(unit: Unit) -> bool:
    """SIGTERM to a running unit (it checkpoints and exits 75); False while it has no process id yet."""
    try:
        pid = int(pid_file(unit.log).read_text())
    except (OSError, ValueError):
        return False
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:  # it has just ended
        pass
    return True


def _last_line(path: Path) -> str:
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()] if path.is_file() else []
    return lines[-1] if lines else "(no output)"


def _local_gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def slurm_parameters(settings: LaunchConfig) -> dict[str, Any]:
    """The `SlurmExecutor` parameters (sbatch lines) of `settings`."""
    params: dict[str, Any] = {"job_name": "ticketlab", "time": settings.time_min, "nodes": 1, "ntasks_per_node": 1,
                              "cpus_per_task": settings.cpus_per_cell, "signal_delay_s": settings.signal_delay_s,
                              "array_parallelism": settings.workers, "setup": list(settings.setup)}
    if settings.partition:
        params["partition"] = settings.partition
    if settings.gpus_per_cell:
        params["gpus_per_node"] = settings.gpus_per_cell
    return params


def executor_for(settings: LaunchConfig, folder: Path):
    """submitit's SLURM executor, or its local one, set up from `settings`."""
    import submitit

    if settings.slurm:
        try:
            executor = submitit.SlurmExecutor(folder=str(folder), max_num_timeout=3)
        except RuntimeError as e:  # no srun on this machine
            raise TicketlabError(f"--slurm: {e}; run on a SLURM login node, or use --workers here") from None
        executor.update_parameters(**slurm_parameters(settings))
        return executor
    executor = submitit.LocalExecutor(folder=str(folder))
    executor.update_parameters(timeout_min=settings.time_min, signal_delay_s=settings.signal_delay_s)
    return executor


def run_units(units: list[Unit], settings: LaunchConfig, folder: Path, *,
              log: Callable[[str], None] = print, stop: Optional[StopFlag] = None) -> dict[str, str]:
    """Run every unit; returns name → "done" or the reason it failed. `stop` (here, not on SLURM):
    once a signal raised it, no unit starts and the running ones are stopped (module doc)."""
    if not units:
        return {}
    executor = executor_for(settings, folder)
    if settings.slurm:
        with executor.batch():  # one job array
            jobs = {u.name: executor.submit(CellJob(unit_command(u.argv, settings.gpus_per_cell), u.log))
                    for u in units}
        for name, job in jobs.items():
            log(f"{name}: submitted as SLURM job {job.job_id}")
        return {name: _outcome(job) for name, job in jobs.items()}
    return _run_local(units, settings, executor, log, stop)


def _run_local(units: list[Unit], settings: LaunchConfig, executor: Any, log: Callable[[str], None],
               stop: Optional[StopFlag]) -> dict[str, str]:
    """At most `workers` jobs at once; slot i gets GPUs [i·g, (i+1)·g) where there are GPUs."""
    available = _local_gpus()
    per_unit = settings.gpus_per_cell or (1 if available else 0)
    if per_unit and per_unit * settings.workers > available:
        raise TicketlabError(f"--workers {settings.workers} with {per_unit} GPU(s) each needs "
                             f"{per_unit * settings.workers} GPUs; this machine has {available}")
    pending, running, outcome = list(units), {}, {}
    free = list(range(settings.workers))
    stopped: set[str] = set()
    while pending or running:
        if stop is not None and stop.requested:  # start nothing more; stop what runs
            pending = []
            stopped |= {name for name, (_, _, unit) in running.items() if name not in stopped and _stop_unit(unit)}
        while pending and free:
            unit, slot = pending.pop(0), free.pop(0)
            pid_file(unit.log).unlink(missing_ok=True)  # a stale one must not be taken for this unit's
            gpus = tuple(range(slot * per_unit, (slot + 1) * per_unit))
            executor.update_parameters(gpus_per_node=len(gpus), visible_gpus=gpus)
            running[unit.name] = (executor.submit(CellJob(unit_command(unit.argv, per_unit), unit.log)), slot, unit)
            log(f"{unit.name}: started (worker {slot}{f', GPU {gpus}' if gpus else ''})")
        time.sleep(POLL_S)
        for name, (job, slot, _) in list(running.items()):
            if job.done():
                outcome[name] = _outcome(job)
                log(f"{name}: {outcome[name]}")
                free.append(slot)
                del running[name]
    return outcome


def _outcome(job: Any) -> str:
    try:
        return str(job.result())
    except Exception as e:  # submitit re-raises the job's error wrapped with its traceback
        text = str(e).strip().splitlines()
        reason = next((line for line in reversed(text) if "TicketlabError" in line or "ticketlab:" in line),
                      text[-1] if text else type(e).__name__)
        return "failed: " + reason.split("TicketlabError: ", 1)[-1]


def launch_cells(cells: list[str], groups: dict[str, DenseGroup], finished: Callable[[str], bool],
                 argv: Callable[[str], list[str]], settings: LaunchConfig, out: Path, *,
                 log: Callable[[str], None] = print, stop: Optional[StopFlag] = None) -> dict[str, str]:
    """Shared dense levels as one wave, then the unfinished cells as another; returns, for each cell
    that did not finish, why. `argv(name)` is the ticketlab command that runs unit `name` alone.
    Raises `Stopped` when a signal to this process stopped the units (`run_units`)."""

    def unit(name: str) -> Unit:
        return Unit(name, argv(name), out / "logs" / f"{name.replace('/', '__')}.log")

    dense = sorted({g.name for g in groups.values() if not RunDir(g.root).is_done(0)})
    outcome = run_units([unit(n) for n in dense], settings, out / "submitit", log=log, stop=stop)
    failed = {n for n, o in outcome.items() if o != "done"}
    todo = [c for c in cells if not finished(c) and not (c in groups and groups[c].name in failed)]
    outcome.update(run_units([unit(c) for c in todo], settings, out / "submitit", log=log, stop=stop))
    if stop is not None and stop.requested and not settings.slurm:
        raise Stopped(stop.signame or "a signal", f"{out}: the running cells checkpointed")
    errors = {}
    for cell in cells:
        group = groups.get(cell)
        if outcome.get(cell, "done") != "done":
            errors[cell] = outcome[cell]
        elif group is not None and group.name in failed:
            errors[cell] = f"not run: its shared dense level {group.name} {outcome[group.name]}"
    for cell, error in errors.items():
        log(f"cell {cell}: {error}")
    return errors
