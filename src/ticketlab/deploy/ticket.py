"""A finished level, loaded for inference: the run's model in eval mode with the level's trained
weights, the mask they obey, and one real validation input to check exported files on.

Every export is compared with this model on that input, so "the exported file gives the same
outputs as the ticket" is checked each time, not assumed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ticketlab.config import Config
from ticketlab.errors import TicketlabError
from ticketlab.lottery.experiment import Experiment
from ticketlab.lottery.opened import open_level
from ticketlab.tasks.base import Task


@dataclass
class Ticket:
    level_dir: Path
    experiment: Experiment
    mask: dict[str, torch.Tensor]
    example: Any  # what the model is called with on one validation image (`Task.example_input`)

    @property
    def model(self) -> nn.Module:
        return self.experiment.model

    @property
    def cfg(self) -> Config:
        return self.experiment.cfg

    @property
    def task(self) -> Task:
        return self.experiment.task

    def units(self) -> dict[str, torch.Tensor]:
        """Alive channels per channel group (a channel ticket; empty for other granularities)."""
        return self.experiment.granularity().units(self.mask)


def load_ticket(level_dir: Path) -> Ticket:
    """The level opened and checked (`lottery.opened.open_level`), in eval mode, with one input."""
    level_dir = Path(level_dir)
    opened = open_level(level_dir)
    exp, mask = opened.experiment, opened.mask
    exp.model.eval()
    if len(exp.data.val) == 0:
        raise TicketlabError(f"{level_dir}: the run's validation split is empty; export needs one input to check on")
    first = exp.data.val[0][0].to(exp.device)
    return Ticket(level_dir, exp, mask, exp.task.example_input(first))


def flat_outputs(out: Any) -> list[torch.Tensor]:
    """A model's outputs as a flat list of tensors, in the order ONNX export lays them out: a
    classifier's logits, or each image's boxes, labels, scores (… masks, keypoints) of a detector.
    A scripted detector's (losses, detections) pair counts as its detections."""
    if isinstance(out, tuple) and len(out) == 2 and isinstance(out[0], dict) and isinstance(out[1], list):
        out = out[1]
    if torch.is_tensor(out):
        return [out]
    if isinstance(out, dict):
        return [t for v in out.values() for t in flat_outputs(v)]
    if isinstance(out, (list, tuple)):
        return [t for o in out for t in flat_outputs(o)]
    raise TypeError(f"unexpected model output {type(out).__name__}")


def max_difference(reference: list[torch.Tensor], other: list[torch.Tensor], what: str) -> float:
    """Largest |difference| between two flat output lists; raises when they do not correspond."""
    if len(reference) != len(other):
        raise TicketlabError(f"{what}: {len(other)} outputs, the masked model gives {len(reference)}")
    worst = 0.0
    for i, (a, b) in enumerate(zip(reference, other)):
        a, b = a.detach().cpu(), torch.as_tensor(b).detach().cpu()
        if tuple(a.shape) != tuple(b.shape):
            raise TicketlabError(f"{what}: output {i} has shape {tuple(b.shape)}, the masked model's {tuple(a.shape)}")
        if a.numel():
            worst = max(worst, float((a.double() - b.double()).abs().max()))
    return worst
