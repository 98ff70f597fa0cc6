"""The DataLoaders of one level: training batches in the pure step order, validation in file order.

Each loader gets its own seeded `torch.Generator`: otherwise creating an iterator draws a worker
seed from the global generator, and resuming (which creates one at a different moment) would
shift every later random number. Under DDP each rank loads its shard of every training batch and
a contiguous slice of the validation set (see `data_order.shard_bounds`).
"""

from __future__ import annotations

from torch.utils.data import DataLoader, Subset
import torch

from ticketlab.data.bundle import DataBundle
from ticketlab.train.data_order import SeededSamples, StepBatchSampler, derive_seed, shard_bounds


def train_loader(data: DataBundle, *, batch_size: int, seed: int, start: int, stop: int,
                 num_workers: int, pin_memory: bool, rank: int = 0, world_size: int = 1) -> DataLoader:
    """Batches (this rank's shards of them) for steps `start` … `stop-1` (see `data_order`)."""
    sampler = StepBatchSampler(len(data.train), batch_size, seed, start, stop,  # type: ignore[arg-type]
                               rank=rank, world_size=world_size)
    samples = SeededSamples(data.train, seed, shard=rank if world_size > 1 else None)
    return DataLoader(samples, batch_sampler=sampler, collate_fn=data.collate_fn,
                      num_workers=num_workers, pin_memory=pin_memory,
                      generator=torch.Generator().manual_seed(derive_seed(seed, "loader")))


def val_loader(data: DataBundle, *, batch_size: int, num_workers: int, pin_memory: bool,
               rank: int = 0, world_size: int = 1) -> DataLoader:
    val = data.val
    if world_size > 1:
        val = Subset(val, range(*shard_bounds(len(val), rank, world_size)))  # type: ignore[arg-type]
    return DataLoader(val, batch_size=batch_size, shuffle=False, collate_fn=data.collate_fn,
                      num_workers=num_workers, pin_memory=pin_memory,
                      persistent_workers=num_workers > 0,
                      generator=torch.Generator().manual_seed(0))
