"""A finished level directory written by hand (mask, final weights, metrics.json), for tests that transfer
from a source run without training one."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from ticketlab.sparsity import save_mask


def write_ticket_level(level: Path, state: dict[str, torch.Tensor], mask: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`level` holding `mask` and `state` with every pruned weight exactly 0 (as a finished ticket);
    returns those final weights."""
    level.mkdir(parents=True, exist_ok=True)
    final = {k: (v * mask[k] if k in mask else v).contiguous() for k, v in state.items()}
    save_mask(level / "mask.safetensors", mask)
    save_file(final, str(level / "final.safetensors"))
    (level / "metrics.json").write_text("{}")
    return final
