"""Small image sets held whole in memory as uint8 tensors, turned into batches with tensor ops.

MNIST, Fashion-MNIST, CIFAR and SVHN fit in memory many times over, and their per-sample
PIL/transform pipeline costs more than a training step of the small nets that use them (issue 14:
3.8–4.3 ms per batch of 60 vs ~1 ms for a LeNet-300-100 step). `ImageTensors` keeps the images
as one N×C×H×W uint8 tensor and `BatchView` makes a whole batch at once — to float, optional
resize, random crop with zero padding, horizontal flip, normalise — on the training device, with
every random draw taken from a generator the caller seeds (per batch, see `train/loaders.py`), so
a batch is a pure function of its key and resuming stays bit-exact.

Indexing one sample (`dataset[i]`) still works and gives the same result as a batch of one,
with draws from torch's global generator: other code (kNN memory banks, `ticketlab eval`,
contrastive views that set a per-sample `transform`) reads the set that way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ticketlab.data.bundle import DataBundle
from ticketlab.data.transforms import Stats

if TYPE_CHECKING:
    from ticketlab.config import DataConfig

CROP_PADDING = 4
Split = tuple[torch.Tensor, torch.Tensor]  # uint8 N×C×H×W images, int64 labels


@dataclass(frozen=True)
class BatchView:
    """How a batch of uint8 images becomes the network's input."""

    stats: Stats
    size: Optional[int] = None  # resize to this side (None = native)
    crop: bool = False  # random crop of `size` after zero padding by CROP_PADDING
    flip: bool = False  # random horizontal flip, p = 0.5

    def __call__(self, images: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """uint8 B×C×H×W → normalised float32 B×C×S×S; draws from `generator` (None = torch's global)."""
        x = images.float().div_(255)
        if self.size is not None and self.size != x.shape[-1]:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True)
        if self.crop:
            x = random_crop(x, CROP_PADDING, generator)
        if self.flip:
            flipped = torch.rand(x.shape[0], device=x.device, generator=generator) < 0.5
            x = torch.where(flipped[:, None, None, None], x.flip(-1), x)
        mean = torch.tensor(self.stats.mean, device=x.device)[:, None, None]
        std = torch.tensor(self.stats.std, device=x.device)[:, None, None]
        return x.sub_(mean).div_(std)


def random_crop(x: torch.Tensor, padding: int, generator: Optional[torch.Generator]) -> torch.Tensor:
    """Each image of B×C×H×W shifted by its own uniform (dy, dx) in [-padding, padding], the
    uncovered border zero: torchvision's RandomCrop(size, padding) done for a whole batch."""
    b, _, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))
    offsets = torch.randint(0, 2 * padding + 1, (2, b), device=x.device, generator=generator)
    rows = (offsets[0][:, None] + torch.arange(h, device=x.device))[:, None, :, None]  # B×1×H×1
    cols = (offsets[1][:, None] + torch.arange(w, device=x.device))[:, None, None, :]  # B×1×1×W
    batch = torch.arange(b, device=x.device)[:, None, None, None]
    channel = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    return padded[batch, channel, rows, cols]


class ImageTensors(Dataset):
    """uint8 images N×C×H×W and int64 labels; `view` makes network inputs of them.

    With `transform` set (a per-sample callable on a uint8 C×H×W image, e.g. contrastive views),
    samples go through it instead and the set is no longer batched by tensor ops."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, view: BatchView,
                 transform: Optional[Callable] = None) -> None:
        self.images, self.labels, self.view, self.transform = images, labels, view, transform
        self._placed: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        if self.transform is not None:
            return self.transform(self.images[i]), int(self.labels[i])
        return self.view(self.images[i:i + 1])[0], int(self.labels[i])

    @property
    def batchable(self) -> bool:
        return self.transform is None

    def on(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(images, labels) on `device`, copied there once."""
        key = str(device)
        if key not in self._placed:
            self._placed[key] = (self.images.to(device), self.labels.to(device))
        return self._placed[key]

    def batch(self, indices: torch.Tensor, device: torch.device,
              generator: Optional[torch.Generator] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch of `indices` on `device`, made by `view` with draws from `generator`."""
        images, labels = self.on(device)
        indices = indices.to(device)
        return self.view(images.index_select(0, indices), generator), labels.index_select(0, indices)

    def __getstate__(self) -> dict:  # DataLoader workers get the CPU tensors only
        return {**self.__dict__, "_placed": {}}


def tensor_bundle(cfg: "DataConfig", train: Split, val: Split, stats: Stats, num_classes: int,
                  class_names: list[str], flip: bool = True) -> DataBundle:
    """A small set's two splits as ImageTensors: training with crop (+ flip) when `data.augment`,
    both resized to `data.image_size` when set. A null `data.augment` (no model to ask, see
    `config.resolve_augment`) augments."""
    augment = cfg.augment is not False
    images = train[0]
    return DataBundle(ImageTensors(*train, BatchView(stats, cfg.image_size, crop=augment, flip=augment and flip)),
                      ImageTensors(*val, BatchView(stats, cfg.image_size)), num_classes, images.shape[1],
                      cfg.image_size or images.shape[-1], class_names)
