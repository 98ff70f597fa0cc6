"""Per-sample training and evaluation transforms for image folders, and every set's channel statistics.

The small sets (MNIST, Fashion-MNIST, CIFAR, SVHN) are batched by tensor ops instead (`in_memory.py`).

Built from torchvision's transforms v2, which draw every random number from torch's global RNG:
checkpointing `torch.get_rng_state()` therefore makes augmentation resumable bit-exactly (with
num_workers=0; worker processes are seeded from it by the DataLoader). Images come in as PIL
images, uint8 or [0, 1] float CHW tensors and leave as normalised float32 CHW tensors.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchvision.transforms import v2


@dataclass(frozen=True)
class Stats:
    mean: tuple[float, ...]
    std: tuple[float, ...]


CIFAR10_STATS = Stats((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
CIFAR100_STATS = Stats((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))
SVHN_STATS = Stats((0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970))
MNIST_STATS = Stats((0.1307,), (0.3081,))
FASHION_MNIST_STATS = Stats((0.2860,), (0.3530,))
IMAGENET_STATS = Stats((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def _finish(stats: Stats) -> list[v2.Transform]:
    return [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(stats.mean), list(stats.std))]


def large_image_transforms(stats: Stats, image_size: int, augment: bool) -> tuple[v2.Compose, v2.Compose]:
    """(train, eval) for image folders: RandomResizedCrop + flip; eval resizes then centre-crops."""
    if augment:
        train = [v2.ToImage(), v2.RandomResizedCrop(image_size, antialias=True), v2.RandomHorizontalFlip()]
    else:
        train = [v2.ToImage(), v2.Resize(image_size, antialias=True), v2.CenterCrop(image_size)]
    evaluation = [v2.ToImage(), v2.Resize(round(image_size * 256 / 224), antialias=True), v2.CenterCrop(image_size)]
    return v2.Compose(train + _finish(stats)), v2.Compose(evaluation + _finish(stats))
