"""Which samples each step sees, and with what augmentation randomness — as pure functions.

Batch `s` holds positions `[b*B, (b+1)*B)` (b = s mod steps_per_epoch) of epoch `s // steps_per_epoch`'s
permutation, drawn from a generator seeded with (seed, epoch). Every batch is loaded with the
torch / Python / NumPy generators seeded from (seed, epoch, b), so its augmentation is fixed too
(seeding once per batch rather than per sample: reseeding three generators costs ~0.3 ms, more
than loading a small sample).
Starting at any step — late resetting, or resuming after a crash — needs no sampler or worker
state, and the result does not depend on `num_workers`.

Under DistributedDataParallel the batch of step `s` is still the global one: rank r of W takes its
contiguous slice (`shard_bounds`), so W processes see exactly the samples one process would. A
rank's loss is weighted by W·n_r/n (`StepBatchSampler.shard_weight`; 1 when shards are equal) so
that DDP's gradient average is the mean over the whole batch even for the last, smaller batch of
an epoch. Augmentation is seeded per (batch, rank) — its draws differ from a single process's
(seeding every sample instead would cost ~40 µs a sample); `data.augment: false` removes that
difference.
"""

from __future__ import annotations

import hashlib
import math
import random
from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler


def derive_seed(*parts: int | str) -> int:
    """A 63-bit seed that is a pure function of `parts` (stable across processes and versions)."""
    text = "\x1f".join(str(p) for p in parts).encode("utf-8")
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "little") & (2**63 - 1)


def steps_per_epoch(num_samples: int, batch_size: int) -> int:
    """Batches per epoch, keeping the last partial batch (drop_last=False)."""
    return math.ceil(num_samples / batch_size)


def shard_bounds(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """The contiguous slice [lo, hi) of n items that `rank` takes; concatenated in rank order the
    slices are 0…n-1, so merged shards come back in the single-process order."""
    return rank * n // world_size, (rank + 1) * n // world_size


def epoch_permutation(num_samples: int, seed: int, epoch: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(derive_seed(seed, "order", epoch))
    return torch.randperm(num_samples, generator=gen)


class StepBatchSampler(Sampler[list[tuple[int, int, int]]]):
    """Yields, for steps `start` … `stop-1`, the (epoch, batch, sample index) keys of that step's
    batch — of this rank's shard of it when `world_size` > 1."""

    def __init__(self, num_samples: int, batch_size: int, seed: int, start: int, stop: int,
                 rank: int = 0, world_size: int = 1) -> None:
        if num_samples <= 0:
            raise ValueError("StepBatchSampler needs at least one sample")
        self.num_samples, self.batch_size, self.seed = num_samples, batch_size, seed
        self.start, self.stop = start, stop
        self.rank, self.world_size = rank, world_size
        self.steps_per_epoch = steps_per_epoch(num_samples, batch_size)

    def global_batch_size(self, step: int) -> int:
        b = step % self.steps_per_epoch
        return min(self.batch_size, self.num_samples - b * self.batch_size)

    def shard_weight(self, step: int) -> float:
        """W·n_r/n for this rank's shard of step `step`: DDP averages over ranks, this makes it a
        mean over samples."""
        n = self.global_batch_size(step)
        lo, hi = shard_bounds(n, self.rank, self.world_size)
        return self.world_size * (hi - lo) / n

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def chunks(self) -> Iterator[tuple[int, int, torch.Tensor]]:
        """(epoch, batch, sample indices of this rank's shard) for each step, as a tensor."""
        epoch, perm = -1, torch.empty(0, dtype=torch.long)
        for step in range(self.start, self.stop):
            e, b = divmod(step, self.steps_per_epoch)
            if e != epoch:
                epoch, perm = e, epoch_permutation(self.num_samples, self.seed, e)
            chunk = perm[b * self.batch_size:(b + 1) * self.batch_size]
            lo, hi = shard_bounds(len(chunk), self.rank, self.world_size)
            yield e, b, chunk[lo:hi]

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        for e, b, chunk in self.chunks():
            yield [(e, b, i) for i in chunk.tolist()]


def batch_seed(seed: int, epoch: int, batch: int, shard: int | None = None) -> int:
    """The seed of the augmentation draws of one batch (of one rank's shard of it)."""
    return derive_seed(seed, "batch", epoch, batch, *(() if shard is None else ("rank", shard)))


class SeededSamples(Dataset):
    """Wraps a dataset so that the batch keyed (epoch, batch, index…) is loaded under generators seeded
    from (seed, epoch, batch) — and the rank, for a shard of a batch; the caller's generator states
    are left as they were."""

    def __init__(self, dataset: Dataset, seed: int, shard: int | None = None) -> None:
        self.dataset, self.seed, self.shard = dataset, seed, shard

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int, int]) -> Any:
        return self.__getitems__([key])[0]

    def __getitems__(self, keys: list[tuple[int, int, int]]) -> list[Any]:
        epoch, batch, _ = keys[0]
        s = batch_seed(self.seed, epoch, batch, self.shard)
        torch_state, py_state, np_state = torch.get_rng_state(), random.getstate(), np.random.get_state()
        torch.random.default_generator.manual_seed(s)  # CPU only: CUDA generators untouched
        random.seed(s)
        np.random.seed(s % 2**32)
        try:
            return [self.dataset[index] for _, _, index in keys]
        finally:
            torch.set_rng_state(torch_state)
            random.setstate(py_state)
            np.random.set_state(np_state)
