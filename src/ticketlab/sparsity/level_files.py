"""A level's files checked against each other, and against the model when there is one: the one check
that every reader of a finished level goes through before trusting it — `open_level` (`eval`, `info`,
`export`, `branch`), `report` (every level whose mask it reads), a transfer's `init.source`, and a
resumed `find` before it builds on its finished levels.

  mask.safetensors    readable, ticketlab-mask/1, names and shapes (`sparsity.load_mask`)
  final.safetensors   readable; holds every masked tensor at the mask's shape (with a model: exactly
  rewind.safetensors  the model's names and shapes); every weight the mask prunes is exactly 0

Without a model (report, transfer) the files can only be checked against each other, which still
catches a truncated or swapped file; with one (eval, resume, ...) they must also fit it. A level dir
without `rewind.safetensors` (written before the level trains, so present in every finished level
ticketlab writes) is checked on its other two files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Sequence

import torch
from safetensors.torch import load_file

from ticketlab.errors import TicketlabError
from ticketlab.rundir import FINAL_FILE, MASK_FILE, START_FILE
from ticketlab.sparsity.mask_io import load_mask


@dataclass
class LevelFiles:
    mask: dict[str, torch.Tensor]             # parameter name → kept (bool)
    final: dict[str, torch.Tensor]            # the trained weights
    rewind: Optional[dict[str, torch.Tensor]]  # the weights the level started from (None: no file)


def _keys(keys: Sequence[str]) -> str:
    return ", ".join(keys[:3]) + (", …" if len(keys) > 3 else "")


def read_weights(path: Path, expected: Optional[Mapping[str, torch.Tensor]] = None) -> dict[str, torch.Tensor]:
    """A weights file written by ticketlab; with `expected` (a model's state dict), checked to hold
    exactly its names at its shapes."""
    path = Path(path)
    if not path.is_file():
        raise TicketlabError(f"{path}: missing (the run directory is incomplete)")
    try:
        state = load_file(str(path))
    except Exception as e:  # safetensors raises several types for truncated/corrupt files
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise TicketlabError(f"{path}: not a readable safetensors file ({first})") from None
    if expected is None:
        return state
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    parts = [f"{len(keys)} {label} ({_keys(keys)})" for label, keys in
             (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes)) if keys]
    if parts:
        raise TicketlabError(f"{path}: does not fit the model: {'; '.join(parts)}")
    return state


def _check_pruned_zero(path: Path, weights: Mapping[str, torch.Tensor], mask: Mapping[str, torch.Tensor],
                       mask_path: Path) -> None:
    for name, kept in mask.items():
        if name not in weights:
            raise TicketlabError(f"{path}: has no tensor {name}, which {mask_path} masks")
        w = weights[name]
        if tuple(w.shape) != tuple(kept.shape):
            raise TicketlabError(f"{path}: {name} has shape {tuple(w.shape)}, {mask_path} masks it as "
                                 f"{tuple(kept.shape)}")
        if bool((w.detach()[~kept.to(w.device)] != 0).any()):
            raise TicketlabError(f"{path}: {name} is nonzero where {mask_path} prunes it (not a finished ticket)")


def check_level(level_dir: Path, expected: Optional[Mapping[str, torch.Tensor]] = None,
                scope: Optional[Sequence[str]] = None) -> LevelFiles:
    """Read and check a level's mask and weights. `expected`: the model's state dict, which the
    weights must fit; `scope`: the masked parameters, which the mask must hold exactly (with `expected`)."""
    level_dir = Path(level_dir)
    mask_path = level_dir / MASK_FILE
    shapes = None if expected is None or scope is None else {n: tuple(expected[n].shape) for n in scope}
    mask = load_mask(mask_path, shapes)
    final = read_weights(level_dir / FINAL_FILE, expected)
    _check_pruned_zero(level_dir / FINAL_FILE, final, mask, mask_path)
    rewind = None
    if (level_dir / START_FILE).exists():
        rewind = read_weights(level_dir / START_FILE, expected)
        _check_pruned_zero(level_dir / START_FILE, rewind, mask, mask_path)
    return LevelFiles(mask, final, rewind)
