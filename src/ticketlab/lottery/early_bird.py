"""Early-bird tickets (You et al. 2020; paper 001 Fig. 2f): is the ticket's mask already there
part-way through dense training, and can dense training stop once it is?

At each fraction of level 0 listed in `prune.early_bird`, the dense run draws the mask IMP would draw
for level 1 (same strategy, rate and random generator, `prune`) from the weights at that step and
writes it to `level_00/early_bird/step_NNNNNNN.safetensors`; the end of level 0 is always drawn too,
so the last draw is exactly level 1's mask. `level_00/early_bird.json` records, per draw, its step,
its distance to the previous draw and its IoU with the last draw (|a ∩ b| / |a ∪ b| of the kept
weights, `analysis.masks.relative_similarity`), and where the detector fired: the first draw that
closes `early_bird_patience` consecutive distances below `early_bird_threshold` (distance = 1 − IoU).
With `early_bird_stop`, level 0 ends at that draw and `steps_saved` counts the dense steps not run.

Every draw is a file, and the record is recomputed from the files, so a level 0 resumed from a
checkpoint fires at the same step as one that never stopped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Sequence

import torch
from torch import nn

from ticketlab.analysis.masks import relative_similarity
from ticketlab.atomic import atomic_write_json
from ticketlab.config import parse_steps
from ticketlab.errors import TicketlabError
from ticketlab.lottery.experiment import Experiment, level_generator
from ticketlab.rundir import EARLY_BIRD_FILE
from ticketlab.sparsity import Mask, complement, full_mask, load_mask, prune, save_mask

EARLY_BIRD_DIR = "early_bird"


def draw_steps(fractions: Sequence[float], total: int) -> list[int]:
    """The steps of level 0 (1 … total−1) at which the listed fractions of training fall."""
    for f in fractions:
        if not 0.0 < f < 1.0:
            raise TicketlabError(f"prune.early_bird: expected fractions of training in (0, 1), got {f}")
    return sorted({s for s in (max(1, round(f * total)) for f in fractions) if s < total})


def fired_index(distances: Sequence[Optional[float]], threshold: float, patience: int) -> Optional[int]:
    """Index of the first draw closing `patience` consecutive distances below `threshold`, or None."""
    streak = 0
    for i, d in enumerate(distances):
        streak = streak + 1 if d is not None and d < threshold else 0
        if streak >= patience:
            return i
    return None


def mask_distance(a: Mask, b: Mask) -> float:
    return 1.0 - relative_similarity(a, b)


def draw_file(level0: Path, step: int) -> Path:
    return level0 / EARLY_BIRD_DIR / f"step_{step:07d}.safetensors"


class EarlyBird:
    """The level-0 `on_step` hook that draws early masks (and ends level 0 once the detector fires),
    and the writer of `early_bird.json`."""

    def __init__(self, exp: Experiment, level0: Path):
        p = exp.cfg.prune
        if p.early_bird_stop and not p.early_bird:
            raise TicketlabError("prune.early_bird_stop: needs draw points in prune.early_bird, e.g. [0.1, 0.2, 0.3]")
        if p.early_bird_patience < 1:
            raise TicketlabError(f"prune.early_bird_patience: expected 1 or more, got {p.early_bird_patience}")
        if not 0.0 <= p.early_bird_threshold <= 1.0:
            raise TicketlabError(f"prune.early_bird_threshold: expected a distance in [0, 1], got {p.early_bird_threshold}")
        self.exp, self.level0 = exp, Path(level0)
        self.total = parse_steps(exp.cfg.train.duration, exp.steps_per_epoch, key="train.duration")
        self.steps = draw_steps(p.early_bird, self.total)
        if p.early_bird_stop and exp.rewind_step > self.steps[0]:
            raise TicketlabError(f"prune.rewind: {p.rewind} comes after the first early-bird draw (step "
                                 f"{self.steps[0]}); early_bird_stop could end level 0 before the rewind point")

    def draw(self, weights: dict[str, torch.Tensor]) -> Mask:
        """The mask IMP's level 1 would get from these weights (imp.next_mask with a dense level 0)."""
        scope = {n: weights[n].detach().cpu() for n in self.exp.scope}
        p = self.exp.cfg.prune
        return prune(p.strategy, scope, full_mask(scope), p.rate, level_generator(self.exp.cfg.train.seed, 1))

    def _masks(self, steps: Sequence[int]) -> list[Mask]:
        return [load_mask(draw_file(self.level0, s)) for s in steps]

    def __call__(self, step: int, model: nn.Module) -> bool:
        if step not in self.steps:
            return False
        save_mask(draw_file(self.level0, step), self.draw(model.state_dict()))
        done = [s for s in self.steps if s <= step]
        masks = self._masks(done)
        distances = [None] + [mask_distance(a, b) for a, b in zip(masks, masks[1:])]
        p = self.exp.cfg.prune
        fired = fired_index(distances, p.early_bird_threshold, p.early_bird_patience)
        return p.early_bird_stop and fired is not None and done[fired] == step

    def finish(self, final_state: dict[str, torch.Tensor], final_step: int) -> dict:
        """Draw the end of level 0 (unless the detector ended it at a draw) and write the record."""
        if final_step not in self.steps:
            save_mask(draw_file(self.level0, final_step), self.draw(final_state))
        steps = [s for s in self.steps if s < final_step] + [final_step]
        masks = self._masks(steps)
        last, last_pruned = masks[-1], complement(masks[-1])
        distances = [None] + [mask_distance(a, b) for a, b in zip(masks, masks[1:])]
        p = self.exp.cfg.prune
        fired = fired_index(distances, p.early_bird_threshold, p.early_bird_patience)
        record = {
            "total_steps": self.total, "final_step": final_step, "stop": p.early_bird_stop,
            "threshold": p.early_bird_threshold, "patience": p.early_bird_patience,
            "fired_step": steps[fired] if fired is not None else None,
            "steps_saved": self.total - final_step, "saved_fraction": (self.total - final_step) / self.total,
            "draws": [{"step": s, "fraction": s / self.total, "mask": str(draw_file(Path(), s)),
                       "distance_to_previous": d, "iou_with_final": relative_similarity(m, last),
                       "pruned_iou_with_final": relative_similarity(complement(m), last_pruned)}
                      for s, m, d in zip(steps, masks, distances)],
        }
        atomic_write_json(self.level0 / EARLY_BIRD_FILE, record)
        return record


def read_record(level0: Path) -> dict:
    path = Path(level0) / EARLY_BIRD_FILE
    if not path.is_file():
        raise TicketlabError(f"{path}: missing; run `ticketlab find` with prune.early_bird set, e.g. "
                             "--set 'prune.early_bird=[0.1,0.2,0.3]'")
    return json.loads(path.read_text())


def draw_at(level0: Path, fraction: float) -> tuple[int, Path]:
    """The step and mask file of the early-bird draw at `fraction` of level 0 (as listed in the record)."""
    record = read_record(level0)
    draws = record["draws"]
    for d in draws:
        if abs(d["fraction"] - fraction) <= 0.5 / record["total_steps"]:
            return d["step"], Path(level0) / d["mask"]
    have = ", ".join(f"{d['fraction']:.3g}" for d in draws)
    raise TicketlabError(f"--fraction {fraction:g}: no early-bird draw there in {level0} (draws at {have})")
