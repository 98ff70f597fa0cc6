"""Two augmented views per image, for the contrastive pre-training tasks (simclr, moco).

Any classification dataset becomes an unlabelled pre-training set: `contrastive_bundle` replaces
the training split's transform by one that returns two independent augmentations of the same image
(batches are then `((view1, view2), label)`; the label is never used by the loss) and keeps the
training images under the evaluation transform as `memory`, the labelled bank of kNN evaluation,
and the validation images under the same two-view augmentation as `val_views`, the batches of
retrieval accuracy (paper 002 Eq. 2). Those views are fixed: sample i's pair is drawn from a
generator seeded with (RETRIEVAL_SEED, i), so every level, resume and re-evaluation scores the same
pairs, whatever the loader order or worker count.

Augmentations (SimCLR §3 / MoCo v2): for natural images a random resized crop (scale 0.2–1, as
MoCo v2 and SimCLR on CIFAR), horizontal flip, colour jitter (0.4, 0.4, 0.4, 0.1) with p = 0.8,
grayscale with p = 0.2 and, at ImageNet size, Gaussian blur with p = 0.5. SVHN is not flipped
(mirrored digits are other digits). scikit-learn's 8×8 digits are already normalised tensors: they
get a small random affine warp (rotation, shift, scale) plus pixel noise instead. `data.augment`
does not apply: these augmentations are the task. All draws come from torch's global RNG, which
the training loop seeds per batch, so views are reproducible and resumable.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any, Callable

import torch
from torch.utils.data import Dataset
from torchvision.transforms import v2

from ticketlab.data import transforms as T
from ticketlab.data.bundle import DataBundle
from ticketlab.errors import TicketlabError

NATURAL_STATS = {"cifar10": T.CIFAR10_STATS, "cifar100": T.CIFAR100_STATS, "svhn": T.SVHN_STATS,
                 "fashion_mnist": T.FASHION_MNIST_STATS, "imagefolder": T.IMAGENET_STATS}
BLUR_FROM = 96  # images at least this large get SimCLR's Gaussian blur (not used on CIFAR-sized ones)
DIGITS_NOISE = 0.1  # std of the pixel noise on normalised digits
RETRIEVAL_SEED = 20210602  # seed of the fixed validation view pairs (any constant; kept for comparability)


class TwoViews:
    """A transform returning two independent draws of `transform` on the same input."""

    def __init__(self, transform: Callable) -> None:
        self.transform = transform

    def __call__(self, x: Any) -> tuple[Any, Any]:
        return self.transform(x), self.transform(x)

    def __repr__(self) -> str:
        return f"TwoViews({self.transform!r})"


class Transformed(Dataset):
    """`(transform(x), y)` for each `(x, y)` of a dataset without a transform of its own (tensors)."""

    def __init__(self, dataset: Dataset, transform: Callable) -> None:
        self.dataset, self.transform = dataset, transform

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> tuple[Any, Any]:
        x, y = self.dataset[i]
        return self.transform(x), y


class SeededViews(Dataset):
    """`dataset[i]` (whose transform draws two views) with torch's RNG seeded by (seed, i) around
    the draw and restored after it: the same pair every time sample i is read."""

    def __init__(self, dataset: Dataset, seed: int = RETRIEVAL_SEED) -> None:
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> tuple[Any, Any]:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed * 1_000_003 + i)
            return self.dataset[i]


def natural_augmentation(stats: T.Stats, size: int, flip: bool = True) -> v2.Compose:
    """SimCLR / MoCo v2 augmentation of a PIL or uint8 image, ending normalised with `stats`."""
    channels = len(stats.mean)
    jitter = v2.ColorJitter(0.4, 0.4, 0.4, 0.1) if channels == 3 else v2.ColorJitter(0.4, 0.4)
    ops: list[v2.Transform] = [v2.ToImage(), v2.RandomResizedCrop(size, scale=(0.2, 1.0), antialias=True)]
    if flip:
        ops.append(v2.RandomHorizontalFlip())
    ops.append(v2.RandomApply([jitter], p=0.8))
    if channels == 3:
        ops.append(v2.RandomGrayscale(p=0.2))
    if size >= BLUR_FROM:
        kernel = 2 * (size // 20) + 1  # ~10% of the side, odd (SimCLR)
        ops.append(v2.RandomApply([v2.GaussianBlur(kernel, sigma=(0.1, 2.0))], p=0.5))
    ops += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(stats.mean), list(stats.std))]
    return v2.Compose(ops)


class _PixelNoise(v2.Transform):
    def __init__(self, std: float) -> None:
        super().__init__()
        self.std = std

    def transform(self, inpt: Any, params: dict) -> Any:
        return inpt + self.std * torch.randn_like(inpt)


class _FillWithMin:
    """Run an affine warp with its fill set to the image's own background value."""

    def __init__(self, affine: v2.RandomAffine) -> None:
        self.affine = affine

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        low = float(x.min())
        return self.affine(x - low) + low  # warping fills with 0, the background of x - low


def digits_augmentation() -> v2.Compose:
    """Small warps of a normalised 1×8×8 tensor (no flip: mirrored digits are other digits).
    The background fill is the tensor's minimum, i.e. blank paper after normalisation."""
    return v2.Compose([_FillWithMin(v2.RandomAffine(degrees=12, translate=(0.12, 0.12), scale=(0.85, 1.1))),
                       _PixelNoise(DIGITS_NOISE)])


def _with_transform(dataset: Dataset, transform: Callable, where: str) -> Dataset:
    if not hasattr(dataset, "transform"):
        raise TicketlabError(f"{where}: this dataset has no image transform to replace by two views")
    out = copy.copy(dataset)
    out.transform = transform  # type: ignore[attr-defined]
    return out


def contrastive_bundle(bundle: DataBundle, fmt: str) -> DataBundle:
    """`bundle` (built for classification) with two-view training batches, the kNN memory bank and
    the fixed two-view validation pairs of retrieval accuracy."""
    if fmt == "digits":
        views = TwoViews(digits_augmentation())
        return replace(bundle, train=Transformed(bundle.train, views), memory=bundle.train,
                       val_views=SeededViews(Transformed(bundle.val, views)))
    stats = NATURAL_STATS[fmt]
    views = TwoViews(natural_augmentation(stats, bundle.image_size, flip=fmt != "svhn"))
    eval_transform = bundle.val.transform  # type: ignore[attr-defined]
    where = f"data.format={fmt}"
    return replace(bundle, train=_with_transform(bundle.train, views, where),
                   memory=_with_transform(bundle.train, eval_transform, where),
                   val_views=SeededViews(_with_transform(bundle.val, views, where)))
