"""bench/small_sets.py compares like with like: its plain loop and ticketlab's in-memory training
level see the same batches with the same augmentation and end with the same weights, bit for bit."""

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from small_sets import plain_steps, ticketlab_steps  # noqa: E402

from ticketlab.data.bundle import DataBundle  # noqa: E402
from ticketlab.data.in_memory import BatchView, ImageTensors  # noqa: E402
from ticketlab.data.transforms import FASHION_MNIST_STATS  # noqa: E402
from ticketlab.models.lenet import LeNet300100  # noqa: E402


def test_plain_loop_and_ticketlab_train_the_same_weights(tmp_path):
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (150, 1, 28, 28), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 10, (150,), generator=g)
    view = BatchView(FASHION_MNIST_STATS, crop=True, flip=True)
    data = DataBundle(ImageTensors(x, y, view), ImageTensors(x[:20], y[:20], BatchView(FASHION_MNIST_STATS)), 10, 1, 28)
    models = []
    for _ in range(2):
        torch.manual_seed(0)
        models.append(LeNet300100(784, 10))
    plain = plain_steps(models[0], data.train, 7, time.perf_counter)  # 7 steps: an epoch of 3, then more
    ours = ticketlab_steps(models[1], data, 7, time.perf_counter, tmp_path / "run")
    assert len(plain) == 7 and len(ours) == 6  # per-step times (ticketlab's between on_step calls)
    for (name, a), b in zip(models[0].state_dict().items(), models[1].state_dict().values()):
        assert torch.equal(a, b), name
