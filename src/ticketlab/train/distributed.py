"""Several processes training one level together (torchrun + DistributedDataParallel).

`torchrun --nproc_per_node N -m ticketlab find CONFIG` starts N copies of the command with
RANK / WORLD_SIZE / LOCAL_RANK in their environment; `process_group` turns that into a `Dist`
(NCCL on CUDA, gloo on CPU) and tears it down afterwards. Without those variables it yields
`SINGLE`, on which every collective is a no-op, so the lottery layer and the training loop have one
code path. The split of work:

- every rank computes everything that decides the outcome (masks, start weights) from the same
  files, deterministically, and `same_everywhere` checks that they agree;
- only rank 0 writes into the run dir (`on_main`), the others wait for it at a barrier;
- a rank that dies takes the job down: torchrun stops the others when one exits non-zero, and a
  collective that lost its peer raises (gloo at once, NCCL after `train.dist_timeout`), which the
  CLI reports as one line saying how to resume.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterator, TypeVar

import torch
import torch.distributed as tdist
from torch import nn

from ticketlab.errors import TicketlabError
from ticketlab.train.device import resolve_device

T = TypeVar("T")


@dataclass(frozen=True)
class Dist:
    """This process's place in the job; `SINGLE` when there is no job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            tdist.barrier()

    def all_gather(self, obj: T) -> list[T]:
        """Every rank's `obj` (picklable), in rank order."""
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world_size
        tdist.all_gather_object(out, obj)
        return out

    def on_main(self, write: Callable[[], T]) -> T | None:
        """Run `write` on rank 0 only (run-dir files), then let every rank past once it is done."""
        result = write() if self.is_main else None
        self.barrier()
        return result

    def same_everywhere(self, value: Any, what: str) -> None:
        """Raise on every rank unless `value` (a digest, a flag) is equal on all of them."""
        values = self.all_gather(value)
        if any(v != values[0] for v in values):
            differ = [r for r, v in enumerate(values) if v != values[0]]
            raise TicketlabError(f"{what} differs between processes (rank 0 vs rank(s) {differ}); "
                                 "every rank must see the same files and software versions")

    def broadcast_buffers(self, model: nn.Module) -> None:
        """Give every rank rank 0's buffers (BatchNorm running statistics: each rank updated its own
        copy from its shard in the last forward) before evaluating or saving."""
        if self.enabled:
            for buf in model.buffers():
                tdist.broadcast(buf, 0)

    def all_reduce_sum(self, values: torch.Tensor) -> torch.Tensor:
        if self.enabled:
            values = values.clone()
            tdist.all_reduce(values)
        return values


SINGLE = Dist()


def env_dist() -> Dist:
    """The job described by torchrun's environment variables (SINGLE when there are none)."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError:
        raise TicketlabError("WORLD_SIZE / RANK / LOCAL_RANK: expected integers (set by torchrun)") from None
    return Dist(rank=rank, world_size=world, local_rank=local) if world > 1 else SINGLE


@contextlib.contextmanager
def process_group(device_spec: str, timeout_s: int) -> Iterator[Dist]:
    """Join the torchrun job (if any) for the duration of the block.

    On CUDA each process takes `cuda:LOCAL_RANK` (set as the current device, so `device: cuda`
    means that one) and talks over NCCL; on CPU over gloo.
    """
    dist = env_dist()
    if not dist.enabled:
        yield dist
        return
    device = resolve_device(device_spec)
    if device.type == "cuda":
        if device.index is not None:
            raise TicketlabError(f"train.device: {device_spec!r} names one GPU, but under torchrun each "
                                 "process takes cuda:LOCAL_RANK; use device: cuda or auto")
        torch.cuda.set_device(dist.local_rank)
    backend = "nccl" if device.type == "cuda" else "gloo"
    tdist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
    try:
        yield dist
    finally:
        tdist.destroy_process_group()
