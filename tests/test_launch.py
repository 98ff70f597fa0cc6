"""Cells side by side through submitit: a 4-cell sweep on 2 local workers (submitit's LocalExecutor),
one of them preempted the way SLURM and submitit's controller do it (USR2 to the job's task process),
requeued and resumed, ends with the same aggregate as the sequential sweep; a failed cell is
reported and not retried; a second launcher never trains a cell another one holds; the SLURM
submission is a job array with the partition, time, GPUs and signal asked for."""

from __future__ import annotations

import csv
import os
import signal
import threading
import time
from pathlib import Path

import pytest
import yaml

from submitit.slurm.slurm import _make_sbatch_string

from ticketlab.lottery.launch import CellJob, LaunchConfig, Unit, run_units, slurm_parameters, unit_command
from ticketlab.lottery.lock import run_lock
from ticketlab.lottery.study import run_study

ROOT = Path(__file__).resolve().parents[1]
SET = ["train.duration=6ep", "train.eval_every=3ep", "train.checkpoint_every=2ep", "prune.levels=1",
       "prune.rate=0.5"]


def aggregate_without_timing(path: Path) -> list[dict]:
    with open(path) as f:
        return [{k: v for k, v in row.items() if not k.startswith("seconds")} for row in csv.DictReader(f)]


def processes() -> dict[int, tuple[int, str]]:
    """pid → (parent pid, command line) of every process (Linux /proc)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                found[int(entry.name)] = (int(stat[1]), (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode())
            except (OSError, IndexError, ValueError):
                continue
    return found


def preempt_when_training(cell_dir: Path, cell: str, done: list) -> None:
    """Once `cell` is inside level 1, USR2 to the submitit task process running it (as SLURM does)."""
    deadline = time.time() + 600
    while time.time() < deadline and not (cell_dir / "level_01" / "checkpoint.safetensors").exists():
        time.sleep(0.05)
    for pid, (parent, cmd) in processes().items():
        if f"--cell {cell}" in cmd and "ticketlab" in cmd:
            os.kill(parent, signal.SIGUSR2)  # the parent is submitit's task process
            done.append(pid)
            return


@pytest.mark.slow
def test_two_local_workers_with_a_preemption_give_the_sequential_aggregate(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text(yaml.safe_dump({"config": str(ROOT / "configs/digits_lenet.yaml"), "set": SET,
                                    "grid": {"train.seed": [0, 1, 2]}}))  # 3 cells on 2 workers: one waits
    sequential = tmp_path / "sequential"
    run_study(spec, sequential, log=lambda s: None)

    parallel = tmp_path / "parallel"
    victim, preempted = "seed=2", []
    watcher = threading.Thread(target=preempt_when_training,
                               args=(parallel / "cells" / victim, victim, preempted), daemon=True)
    watcher.start()
    lines: list[str] = []
    records = run_study(spec, parallel, log=lines.append, launch=LaunchConfig(workers=2))
    watcher.join(timeout=5)
    assert preempted, "the preemption never landed"
    assert all(r["finished"] and "error" not in r for r in records), records
    log = (parallel / "logs" / f"{victim}.log").read_text()
    assert "stopped by SIGTERM" in log and "checkpointed at step" in log  # it stopped, then resumed
    assert aggregate_without_timing(parallel / "aggregate.csv") == aggregate_without_timing(sequential / "aggregate.csv")
    assert max(sum(1 for line in lines[:i] if "started" in line) - sum(1 for line in lines[:i] if ": done" in line)
               for i in range(len(lines) + 1)) <= 2  # never more than 2 at once


def test_a_failed_unit_is_reported_once_and_a_held_cell_is_not_trained_twice(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text(yaml.safe_dump({"config": str(ROOT / "configs/digits_lenet.yaml"),
                                    "set": ["train.duration=1ep", "prune.levels=0"],
                                    "grid": {"train.seed": [0]}}))
    cell = tmp_path / "out" / "cells" / "seed=0"
    log = tmp_path / "seed0.log"
    with run_lock(cell):  # another launcher is training this cell
        outcome = run_units([Unit("seed=0", ["sweep", str(spec), "--out", str(tmp_path / "out"), "--cell", "seed=0"],
                                  log)], LaunchConfig(workers=2), tmp_path / "submitit", log=lambda s: None)
    assert outcome["seed=0"].startswith("failed: exit status 2: ticketlab: error:") and "in use by pid" in outcome["seed=0"]
    assert not (cell / "level_00" / "metrics.json").exists()
    assert log.read_text().count("ticketlab: error:") == 1  # ran once, not retried


def test_slurm_submission_is_a_job_array_with_the_resources_asked_for(tmp_path):
    settings = LaunchConfig(slurm=True, workers=3, partition="gpu", time_min=600, gpus_per_cell=4,
                            cpus_per_cell=16, signal_delay_s=180, setup=["source .venv/bin/activate"])
    # the sbatch file submitit's SlurmExecutor writes for an array of 5 units (no srun here to submit it)
    script = _make_sbatch_string("CMD", tmp_path, map_count=5, **slurm_parameters(settings))
    for line in ("#SBATCH --partition=gpu", "#SBATCH --time=600", "#SBATCH --gpus-per-node=4",
                 "#SBATCH --cpus-per-task=16", "#SBATCH --signal=USR2@180", "#SBATCH --array=0-4%3",
                 "source .venv/bin/activate"):
        assert line in script, line
    command = unit_command(["sweep", "s.yaml", "--cell", "c"], 4)  # a cell on 4 GPUs is a torchrun job
    assert command[1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=4"]
    assert CellJob(command, tmp_path / "log").__getstate__()["_child"] is None  # picklable for requeue
