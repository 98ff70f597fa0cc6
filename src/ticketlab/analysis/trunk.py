"""Masks named relative to the ResNet trunk, so masks of different model kinds meet.

A classifier's mask names `layer1.0.conv1.weight`, SimCLR's and MoCo's `backbone.layer1.0.conv1.weight`,
a torchvision R-CNN's `backbone.body.layer1.0.conv1.weight`, DeepLabV3's `backbone.layer1.…`. Paper 002
(§5.1, Fig. 6–7) compares masks of supervised, SimCLR and MoCo pre-training, which only makes sense on
the trunk they share. The trunk's prefix is found exactly as `model.weights` and `init: map: backbone`
find it (`models/resnet_keys.py`: the prefix P of `P + conv1.weight` and `P + layer1.0.conv1.weight`
in the run's weights, momentum copies such as MoCo's key encoder set aside), from the tensor names of a
level's weights file (the safetensors header only; no tensor is read). The classifier head `fc.*` is
not trunk. A run without a ResNet (LeNet) keeps its names as they are.
"""

from __future__ import annotations

from typing import Mapping, Optional

import torch
from safetensors import safe_open

from ticketlab.analysis.runs import Run
from ticketlab.errors import TicketlabError
from ticketlab.models.resnet_keys import HEAD, pick_prefix, resnet_prefixes
from ticketlab.rundir import FINAL_FILE, START_FILE, level_name

WEIGHT_FILES = (FINAL_FILE, START_FILE)


def weight_names(run: Run) -> list[str]:
    """Tensor names of the run's first finished level's weights (final, else rewind); [] if neither."""
    level_dir = run.path / level_name(min(run.levels))
    for name in WEIGHT_FILES:
        path = level_dir / name
        if path.is_file():
            try:
                with safe_open(str(path), framework="pt") as f:
                    return list(f.keys())
            except Exception as e:  # a corrupt header: safetensors raises several types
                raise TicketlabError(f"{path}: cannot read the tensor names ({type(e).__name__})") from None
    return []


def trunk_prefix(run: Run) -> Optional[str]:
    """The ResNet trunk's prefix in the run's model ('' for a classifier), None without a ResNet."""
    names = weight_names(run)
    if not resnet_prefixes(names):
        return None
    return pick_prefix(names, f"{run.path}: weights")


def relative(mask: Mapping[str, torch.Tensor], prefix: Optional[str]) -> dict[str, torch.Tensor]:
    """The mask's trunk tensors under their trunk-relative names (`layer1.0.conv1.weight`); the whole
    mask, names unchanged, when `prefix` is None."""
    if prefix is None:
        return dict(mask)
    out = {n[len(prefix):]: m for n, m in mask.items() if n.startswith(prefix)}
    return {n: m for n, m in out.items() if not n.startswith(HEAD)}


def trunk_mask(run: Run, level: int) -> dict[str, torch.Tensor]:
    """The run's mask at `level`, named relative to its trunk."""
    return relative(run.mask(level), trunk_prefix(run))


def comparable(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> tuple[list[str], list[str]]:
    """Names both masks hold with equal shapes (in a's order), and the shared names left out because
    their shapes differ (e.g. conv1 of a 1-channel and a 3-channel model)."""
    shared = [n for n in a if n in b]
    same = [n for n in shared if tuple(a[n].shape) == tuple(b[n].shape)]
    return same, [n for n in shared if n not in same]
