"""`torchrun --nproc_per_node 2 -m ticketlab find` on CPU (gloo), through the real launcher.

Two processes with the global batch split between them must find the masks one process finds (the
same samples per step; only the order of float reductions differs), leave a run dir of the same
shape, fail as a whole when one rank is killed, and resume bit-exactly on a rerun. The single-process
runs they are compared with are the same `find` in this test process (`cli.main`, no interpreter
start-up), while the torchrun job runs beside it.

Detection is compared under settings that remove the differences which are not rounding: frozen
norms (BatchNorm would normalise over each rank's shard — SyncBatchNorm needs CUDA), anchor and RoI
sample sizes that take every candidate (no random subsampling), no augmentation (seeded per rank
shard). What remains beyond rounding is torchvision's normalisation of the RoI losses by the number
of RoIs sampled in the whole (per-rank) batch, which varies per image: a small, honest difference,
and the masks still agree to IoU ≥ 0.99.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from ticketlab.cli import main
from ticketlab.data.synth import SynthConfig, generate_synthetic

DIGITS = ["configs/digits_lenet.yaml", "--set", "train.duration=12ep", "--set", "train.checkpoint_every=2ep",
          "--set", "train.eval_every=6ep", "--set", "prune.levels=1"]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]


def find(args: list[str], out: Path) -> subprocess.Popen:
    """`torchrun --nproc_per_node 2 -m ticketlab find ARGS --out OUT`, started."""
    return subprocess.Popen([*TORCHRUN, "-m", "ticketlab", "find", *args, "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def find_single(args: list[str], out: Path) -> None:
    """`ticketlab find ARGS --out OUT` in one process: this one."""
    assert main(["find", *args, "--out", str(out)]) == 0


def finished(proc: subprocess.Popen) -> None:
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]


def mask_bits(path: Path) -> np.ndarray:
    """The mask file's bits, unpacked with numpy as the format says (little bit order)."""
    with safe_open(str(path), "np") as f:
        return np.concatenate([np.unpackbits(f.get_tensor(k), bitorder="little") for k in sorted(f.keys())])


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def shape(run: Path) -> set[str]:
    """Relative paths of the run dir, TensorBoard event files by directory only (their names hold pid and time)."""
    return {str(p.relative_to(run).parent / "events") if p.name.startswith("events.out.tfevents") else
            str(p.relative_to(run)) for p in run.rglob("*")}


def assert_like_single_process(ddp: Path, single: Path, levels: int) -> None:
    assert shape(ddp) == shape(single)
    for level in range(levels + 1):
        a, b = (mask_bits(r / f"level_{level:02d}" / "mask.safetensors") for r in (ddp, single))
        assert iou(a, b) >= 0.99, level


@pytest.fixture(scope="module")
def digits_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("digits")
    ddp = find(DIGITS, root / "ddp")
    find_single(DIGITS, root / "single")
    finished(ddp)
    return root / "single", root / "ddp"


@pytest.mark.slow
def test_two_processes_find_the_single_process_masks(digits_runs):
    single, ddp = digits_runs
    assert_like_single_process(ddp, single, levels=1)
    events = EventAccumulator(str(ddp / "tensorboard" / "level_01"))
    events.Reload()
    assert {"train/loss", "train/lr", "val/accuracy"} <= set(events.Tags()["scalars"])


@pytest.mark.slow
def test_killed_rank_fails_the_job_and_a_rerun_resumes_exactly(digits_runs, tmp_path):
    _, reference = digits_runs
    out = tmp_path / "killed"
    job = find(DIGITS, out)
    checkpoint = out / "level_01" / "checkpoint.safetensors"
    deadline = time.time() + 300
    while not checkpoint.exists() and job.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    workers = Path(f"/proc/{job.pid}/task/{job.pid}/children").read_text().split()
    rank1 = [pid for pid in workers if b"RANK=1" in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")]
    assert len(rank1) == 1
    os.kill(int(rank1[0]), signal.SIGKILL)
    _, err = job.communicate(timeout=300)
    assert job.returncode != 0
    assert "rank      : 1" in err and "SIGKILL" in err  # torchrun's summary names the dead rank
    assert not (out / "level_01" / "metrics.json").exists()

    finished(find(DIGITS, out))
    for level in range(2):
        for name in ("mask.safetensors", "rewind.safetensors", "final.safetensors"):
            assert (out / f"level_{level:02d}" / name).read_bytes() == \
                (reference / f"level_{level:02d}" / name).read_bytes(), (level, name)


@pytest.mark.slow
def test_two_processes_find_the_single_process_detection_masks(tmp_path):
    generate_synthetic(tmp_path / "synth", SynthConfig(n_train=8, n_val=4, seed=3))
    args = ["configs/synth_fasterrcnn_lite.yaml", "--set", f"data.root={tmp_path / 'synth'}",
            "--set", "train.duration=4it", "--set", "train.eval_every=4it", "--set", "train.checkpoint_every=2it",
            "--set", "train.warmup=0it", "--set", "train.milestones=[]", "--set", "train.eval_batch_size=4",
            "--set", "prune.levels=1", "--set", "data.augment=false", "--set", "model.detection.norm=frozen",
            "--set", "model.detection.rpn_batch_size_per_image=4096",  # ≥ the 4092 anchors of a 128-px image
            "--set", "model.detection.box_batch_size_per_image=512"]  # ≥ 300 proposals + ground truth
    ddp = find(args, tmp_path / "ddp")
    find_single(args, tmp_path / "single")
    finished(ddp)
    assert_like_single_process(tmp_path / "ddp", tmp_path / "single", levels=1)


DISAGREE = """
import os
from ticketlab.errors import TicketlabError
from ticketlab.train.distributed import process_group
with process_group("cpu", 60) as dist:
    try:
        dist.same_everywhere(dist.rank == 1, "the test value")
    except TicketlabError as e:
        print(f"rank {dist.rank}: {e}")
"""


@pytest.mark.slow
def test_ranks_that_disagree_stop_with_a_clear_message(tmp_path):
    script = tmp_path / "disagree.py"
    script.write_text(DISAGREE)
    out = subprocess.run([*TORCHRUN, str(script)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    for rank in (0, 1):
        assert f"rank {rank}: the test value differs between processes (rank 0 vs rank(s) [1])" in out.stdout
