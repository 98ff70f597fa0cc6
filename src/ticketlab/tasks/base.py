"""What a task is, seen from the training loop and the IMP runner.

A task knows how to turn a batch into loss terms and how to evaluate a model on a loader; it knows
nothing about pruning. The runner records `headline` (e.g. accuracy, bbox_AP) in summaries.

A task may also define `after_step(model)`: the loop calls it after every optimizer step, once the
pruned weights are zero again (MoCo moves its momentum encoder there). It must be a deterministic
function of the model, so that resumed training stays bit-exact.
"""

from __future__ import annotations

from typing import Any, Iterable, Protocol

import torch
from torch import nn


class Task(Protocol):
    name: str
    headline: str  # key of `evaluate`'s result that summaries and verdicts use
    higher_is_better: bool

    def loss(self, model: nn.Module, batch: Any, device: torch.device) -> dict[str, torch.Tensor]:
        """Loss terms for one training batch; must include the total under 'loss'."""
        ...

    def evaluate(self, model: nn.Module, loader: Iterable, device: torch.device) -> dict[str, float]:
        """Metrics on a validation loader (the model is put in eval mode by the caller)."""
        ...
