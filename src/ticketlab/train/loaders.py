"""The loaders of one level: training batches in the pure step order, validation in file order.

Each DataLoader gets its own seeded `torch.Generator`: otherwise creating an iterator draws a worker
seed from the global generator, and resuming (which creates one at a different moment) would
shift every later random number. Under DDP each rank loads its shard of every training batch and
a contiguous slice of the validation set (see `data_order.shard_bounds`).

Sets held in memory as tensors (`data/in_memory.ImageTensors`) skip the DataLoader: each batch is
indexed and augmented by tensor ops on the training device, its draws from a generator seeded
with the same per-batch key (`data_order.batch_seed`), so it too is a pure function of the step.
"""

from __future__ import annotations

from typing import Any, Iterator, Optional

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from ticketlab.data.bundle import DataBundle
from ticketlab.train.data_order import SeededSamples, StepBatchSampler, batch_seed, derive_seed, shard_bounds


def batched_in_memory(dataset: Dataset, collate_fn: Any) -> bool:
    """Whether `dataset` makes whole batches itself (an in-memory tensor set, default collation)."""
    return collate_fn is None and getattr(dataset, "batchable", False)


class MemoryTrainBatches:
    """The training batches of steps `start` … `stop-1`, made by the dataset's `batch` on `device`."""

    def __init__(self, dataset: Any, sampler: StepBatchSampler, device: torch.device, shard: Optional[int]) -> None:
        self.dataset, self.batch_sampler, self.device, self.shard = dataset, sampler, device, shard

    def __len__(self) -> int:
        return len(self.batch_sampler)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for epoch, b, indices in self.batch_sampler.chunks():
            generator = torch.Generator(device=self.device)
            generator.manual_seed(batch_seed(self.batch_sampler.seed, epoch, b, self.shard))
            yield self.dataset.batch(indices, self.device, generator)


class MemoryEvalBatches:
    """Samples `lo` … `hi-1` of an in-memory set in file order, without augmentation draws."""

    def __init__(self, dataset: Any, batch_size: int, device: torch.device, lo: int, hi: int) -> None:
        self.dataset, self.batch_size, self.device, self.lo, self.hi = dataset, batch_size, device, lo, hi

    def __len__(self) -> int:
        return -(-(self.hi - self.lo) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for start in range(self.lo, self.hi, self.batch_size):
            indices = torch.arange(start, min(start + self.batch_size, self.hi))
            yield self.dataset.batch(indices, self.device)


def train_loader(data: DataBundle, *, batch_size: int, seed: int, start: int, stop: int,
                 num_workers: int, pin_memory: bool, rank: int = 0, world_size: int = 1,
                 device: Optional[torch.device] = None) -> Any:
    """Batches (this rank's shards of them) for steps `start` … `stop-1` (see `data_order`); the
    result has the `batch_sampler` the loop asks for shard weights."""
    sampler = StepBatchSampler(len(data.train), batch_size, seed, start, stop,  # type: ignore[arg-type]
                               rank=rank, world_size=world_size)
    shard = rank if world_size > 1 else None
    if batched_in_memory(data.train, data.collate_fn):
        return MemoryTrainBatches(data.train, sampler, device or torch.device("cpu"), shard)
    samples = SeededSamples(data.train, seed, shard=shard)
    return DataLoader(samples, batch_sampler=sampler, collate_fn=data.collate_fn,
                      num_workers=num_workers, pin_memory=pin_memory,
                      generator=torch.Generator().manual_seed(derive_seed(seed, "loader")))


def val_loader(data: DataBundle, *, batch_size: int, num_workers: int, pin_memory: bool,
               rank: int = 0, world_size: int = 1, device: Optional[torch.device] = None) -> Any:
    val = data.val
    lo, hi = shard_bounds(len(val), rank, world_size) if world_size > 1 else (0, len(val))  # type: ignore[arg-type]
    if batched_in_memory(val, data.collate_fn):
        return MemoryEvalBatches(val, batch_size, device or torch.device("cpu"), lo, hi)
    if world_size > 1:
        val = Subset(val, range(lo, hi))
    return DataLoader(val, batch_size=batch_size, shuffle=False, collate_fn=data.collate_fn,
                      num_workers=num_workers, pin_memory=pin_memory,
                      persistent_workers=num_workers > 0,
                      generator=torch.Generator().manual_seed(0))
