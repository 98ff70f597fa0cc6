"""The DataLoaders of one level: training batches in the pure step order, validation in file order.

Each loader gets its own seeded `torch.Generator`: otherwise creating an iterator draws a worker
seed from the global generator, and resuming (which creates one at a different moment) would
shift every later random number.
"""

from __future__ import annotations

from torch.utils.data import DataLoader
import torch

from ticketlab.data.bundle import DataBundle
from ticketlab.train.data_order import SeededSamples, StepBatchSampler, derive_seed


def train_loader(data: DataBundle, *, batch_size: int, seed: int, start: int, stop: int,
                 num_workers: int, pin_memory: bool) -> DataLoader:
    """Batches for steps `start` … `stop-1` (see `data_order`)."""
    sampler = StepBatchSampler(len(data.train), batch_size, seed, start, stop)  # type: ignore[arg-type]
    return DataLoader(SeededSamples(data.train, seed), batch_sampler=sampler, collate_fn=data.collate_fn,
                      num_workers=num_workers, pin_memory=pin_memory,
                      generator=torch.Generator().manual_seed(derive_seed(seed, "loader")))


def val_loader(data: DataBundle, *, batch_size: int, num_workers: int, pin_memory: bool) -> DataLoader:
    return DataLoader(data.val, batch_size=batch_size, shuffle=False, collate_fn=data.collate_fn,
                      num_workers=num_workers, pin_memory=pin_memory,
                      persistent_workers=num_workers > 0,
                      generator=torch.Generator().manual_seed(0))
