"""Benchmark: training steps per second on Fashion-MNIST held in memory, against a plain PyTorch loop
over the same tensors and against the per-sample torchvision loader ticketlab used before.

Arms, each training the same model from the same initialisation with Adam at batch 60:
- `plain`: a hand-written loop — the epoch permutation sliced into batches, `index_select` on the
  uint8 tensors, the same batch augmentation (`BatchView`), forward, backward, step; nothing else.
- `ticketlab`: `train.loop.train_level` on the in-memory set (`data/in_memory.py`): the data-order
  keys, seeded per-batch augmentation, finite-loss check, history and everything else a level does.
- `torchvision`: `train_level` on torchvision's `FashionMNIST` (un-gzipped into a temporary
  `FashionMNIST/raw/`) with per-sample transforms v2 through a DataLoader: the loader of before.
ticketlab's step time is the time between consecutive `on_step` calls (so set-up and the final
evaluation are not counted); --rounds rounds of --steps steps per arm in rotating order; the
figure is the median over rounds of the per-step time of each arm. --clock cpu (default) counts
this process's CPU time, which other jobs competing for the cores do not inflate; wall is the
elapsed time. Models: LeNet-300-100 (no augmentation, its default) and ResNet-20 (random crop with
4-pixel padding + flip).

    .venv/bin/python bench/small_sets.py [--root /usr/share/datasets/fashion-mnist] [--models lenet,resnet20]
        [--rounds 5] [--steps N] [--clock cpu|wall]
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchvision import datasets
from torchvision.transforms import v2

from machine import describe
from ticketlab.config import TrainConfig
from ticketlab.data import transforms as T
from ticketlab.data.bundle import DataBundle
from ticketlab.data.in_memory import BatchView, ImageTensors
from ticketlab.data.mnist import FASHION_MNIST, file_stems, read_idx_set
from ticketlab.models.cifar_resnet import CifarResNet
from ticketlab.models.lenet import LeNet300100
from ticketlab.tasks.classification import ClassificationTask
from ticketlab.train.data_order import StepBatchSampler, batch_seed
from ticketlab.train.loop import LevelRequest, LevelRun, train_level

MODELS = {"lenet": (lambda: LeNet300100(784, 10), False, 200),
          "resnet20": (lambda: CifarResNet(20, 1.0, num_classes=10, in_channels=1), True, 8)}


def plain_steps(model: nn.Module, data: ImageTensors, steps: int, clock) -> list[float]:
    opt = torch.optim.Adam(model.parameters(), lr=1.2e-3)
    sampler = StepBatchSampler(len(data), 60, 0, 0, steps)
    times, last = [], clock()
    for epoch, b, idx in sampler.chunks():
        g = torch.Generator().manual_seed(batch_seed(0, epoch, b))
        x = data.view(data.images.index_select(0, idx), g)
        loss = F.cross_entropy(model(x), data.labels.index_select(0, idx))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        now = clock()
        times.append(now - last)
        last = now
    return times


def ticketlab_steps(model: nn.Module, bundle: DataBundle, steps: int, clock, workdir: Path) -> list[float]:
    cfg = TrainConfig(optimizer="adam", lr=1.2e-3, batch_size=60, duration=f"{steps}it", eval_every="0it",
                      checkpoint_every="0it", tensorboard=False, device="cpu")
    stamps: list[float] = []

    def on_step(step: int, m: nn.Module) -> bool:
        stamps.append(clock())
        return False

    shutil.rmtree(workdir, ignore_errors=True)
    train_level(LevelRequest(model, ClassificationTask(10), bundle, cfg, workdir=workdir, run=LevelRun(on_step=on_step)))
    return [b - a for a, b in zip(stamps, stamps[1:])]


def torchvision_bundle(root: Path, tmp: Path, augment: bool) -> DataBundle:
    raw = tmp / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for stem in file_stems():
        (raw / stem).write_bytes(gzip.decompress((root / f"{stem}.gz").read_bytes()))
    stats = T.FASHION_MNIST_STATS
    finish = [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(stats.mean), list(stats.std))]
    aug = [v2.RandomCrop(28, padding=4), v2.RandomHorizontalFlip()] if augment else []
    train = datasets.FashionMNIST(str(tmp), train=True, download=False, transform=v2.Compose([v2.ToImage(), *aug, *finish]))
    val = torch.utils.data.Subset(datasets.FashionMNIST(str(tmp), train=False, download=False,
                                                        transform=v2.Compose([v2.ToImage(), *finish])), range(60))
    return DataBundle(train, val, 10, 1, 28)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--models", default="lenet,resnet20")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, help="steps per arm and round (default: 200 LeNet, 8 ResNet-20)")
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(1)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    print(describe(), f"clock {args.clock}")
    (x_train, y_train), (x_val, y_val) = read_idx_set(Path(args.root), FASHION_MNIST)
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            build, augment, default_steps = MODELS[name]
            steps = args.steps or default_steps
            view = BatchView(T.FASHION_MNIST_STATS, crop=augment, flip=augment)
            memory = DataBundle(ImageTensors(x_train, y_train, view),
                                ImageTensors(x_val[:60], y_val[:60], BatchView(T.FASHION_MNIST_STATS)), 10, 1, 28)
            old = torchvision_bundle(Path(args.root), Path(tmp) / "tv", augment)
            arms = {"plain": lambda m: plain_steps(m, memory.train, steps, clock),
                    "ticketlab": lambda m: ticketlab_steps(m, memory, steps, clock, Path(tmp) / "run"),
                    "torchvision": lambda m: ticketlab_steps(m, old, steps, clock, Path(tmp) / "run")}
            order = list(arms)
            medians: dict[str, list[float]] = {k: [] for k in arms}
            for r in range(args.rounds):
                for k in order[r % 3:] + order[:r % 3]:
                    torch.manual_seed(0)
                    per_step = arms[k](build())
                    medians[k].append(statistics.median(per_step[2:]))  # the first steps warm up
            ms = {k: statistics.median(v) * 1000 for k, v in medians.items()}
            print(f"{name}: ms per step  plain {ms['plain']:.2f}  ticketlab {ms['ticketlab']:.2f}  "
                  f"torchvision loader {ms['torchvision']:.2f}")
            print(f"{name}: steps/s ticketlab / plain = {ms['plain'] / ms['ticketlab']:.3f}x; "
                  f"ticketlab / torchvision loader = {ms['torchvision'] / ms['ticketlab']:.2f}x "
                  f"({args.rounds} rounds of {steps} steps)")


if __name__ == "__main__":
    main()
