"""Knobs of the synthetic scene generator.

The defaults give a set that a light detector learns from scratch on a laptop CPU in minutes yet
still exercises every task of paper 001: several shape classes plus a keypointed stick-figure
`person`, occlusion, instance masks, COCO's three size ranges and a long-tailed class frequency.
Every field carries a help string (like `ticketlab.config`), so `ticketlab data synth` can list them
and `ticketlab.config.from_dict(SynthConfig, ...)` can validate a mapping of them.
"""

from __future__ import annotations

from dataclasses import dataclass

from ticketlab.config import check_seed, option
from ticketlab.errors import TicketlabError

PERSON = "person"
SHAPES = ("disc", "square", "triangle", "ring", "star", "cross", "hexagon")
ALL_CLASSES = (PERSON,) + SHAPES
SIZE_RANGES = ("small", "medium", "large")


@dataclass
class SynthConfig:
    seed: int = option(0, "seed of the whole set: the same config writes byte-identical files")
    image_size: int = option(128, "side of the square images in pixels")
    n_train: int = option(320, "number of training images")
    n_val: int = option(80, "number of validation images")
    classes: list[str] = option(["person", "disc", "square", "ring", "triangle", "hexagon", "star", "cross"],
                            "object classes, most frequent first; any of " + ", ".join(ALL_CLASSES))
    imbalance: float = option(0.08, "frequency of the last (rarest) class relative to the first; "
                          "1.0 = balanced, classes in between decay geometrically")
    min_objects: int = option(1, "fewest objects placed in one image")
    max_objects: int = option(5, "most objects placed in one image (fewer when they do not fit)")
    size_mix: list[float] = option([0.3, 0.5, 0.2], "probability of drawing an object small (<32²), "
                               "medium or large (>96² px, only when it fits the image)")
    min_visible: float = option(0.5, "every object keeps at least this fraction of its area visible; "
                            "occluders that would hide more are placed elsewhere or dropped")
    truncation: float = option(0.15, "probability that an object is placed partly outside the image")
    keypoints: bool = option(True, "write COCO keypoints (17 named joints, skeleton, visibility) for "
                         "'person' objects; needs 'person' in classes")

    def validate(self) -> None:
        """Raise TicketlabError naming the first field that cannot work."""
        check_seed("synth.seed", self.seed)
        if self.image_size < 32:
            raise TicketlabError(f"synth.image_size: must be at least 32, got {self.image_size}")
        if self.n_train < 1 or self.n_val < 1:
            raise TicketlabError(f"synth.n_train/n_val: need at least one image each, got "
                                 f"{self.n_train}/{self.n_val}")
        if not self.classes:
            raise TicketlabError("synth.classes: must name at least one class")
        for name in self.classes:
            if name not in ALL_CLASSES:
                raise TicketlabError(f"synth.classes: unknown class {name!r}; expected one of "
                                     + ", ".join(ALL_CLASSES))
        if len(set(self.classes)) != len(self.classes):
            raise TicketlabError(f"synth.classes: names repeat in {self.classes}")
        if self.keypoints and PERSON not in self.classes:
            raise TicketlabError("synth.keypoints: true needs 'person' in synth.classes")
        if not 0.0 < self.imbalance <= 1.0:
            raise TicketlabError(f"synth.imbalance: must be in (0, 1], got {self.imbalance}")
        if not 1 <= self.min_objects <= self.max_objects:
            raise TicketlabError(f"synth.min_objects/max_objects: need 1 <= min <= max, got "
                                 f"{self.min_objects}/{self.max_objects}")
        if len(self.size_mix) != 3 or min(self.size_mix) < 0 or sum(self.size_mix) <= 0:
            raise TicketlabError(f"synth.size_mix: expected three non-negative weights "
                                 f"(small, medium, large), got {self.size_mix}")
        if not 0.0 <= self.min_visible <= 1.0:
            raise TicketlabError(f"synth.min_visible: must be in [0, 1], got {self.min_visible}")
        if not 0.0 <= self.truncation <= 1.0:
            raise TicketlabError(f"synth.truncation: must be in [0, 1], got {self.truncation}")

    def class_weights(self) -> list[float]:
        """Long-tailed sampling weights: geometric from 1 (first class) to `imbalance` (last)."""
        n = len(self.classes)
        if n == 1:
            return [1.0]
        return [self.imbalance ** (i / (n - 1)) for i in range(n)]
