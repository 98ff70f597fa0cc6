"""Layout of one synthetic image: choose objects, place them with bounded occlusion, annotate.

Objects are placed back to front, larger ones first, so small objects occlude big ones as in
photographs. A placement is rejected when it would leave any earlier object with less than
`min_visible` of its area in view (or, for truncation, itself with less than that inside the image).
Annotations describe what is *visible*: the mask is the visible part, the box its tight bounding
box, the area its pixel count. A keypoint is v=2 when its pixel shows the figure, v=1 when another
object covers it but it lies inside the visible box, v=0 (x=y=0) otherwise: outside the image or
hidden outside the visible box, where an annotator could not place it either.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from ticketlab.data.synth.config import PERSON, SynthConfig
from ticketlab.data.synth.paint import background, object_colour
from ticketlab.data.synth.shapes import AREA_COEF, Patch, draw_object

# Visible-area targets (pixels) per COCO size range; large ones only where they fit the image.
AREA_TARGETS = {"small": (14.0**2, 30.0**2), "medium": (38.0**2, 90.0**2), "large": (100.0**2, 116.0**2)}
PLACEMENT_TRIES = 25
MIN_PIXELS = 40
LARGE = 96**2


@dataclass
class SceneObject:
    cls: str
    mask: np.ndarray  # bool (H, W), visible part
    truncated: bool
    occluded: bool
    keypoints: Optional[list[float]]  # COCO flat [x, y, v] * 17, None for shapes


def size_range(area: float) -> str:
    """COCO's area ranges, as used by COCOeval."""
    return "small" if area < 32**2 else "medium" if area < LARGE else "large"


def _place(patch: Patch, size: int, allow_out: bool, rng: np.random.Generator) -> tuple[int, int]:
    h, w = patch.mask.shape
    slack_x, slack_y = (int(0.35 * w), int(0.35 * h)) if allow_out else (0, 0)
    lo_x, hi_x = -slack_x, max(-slack_x, size - w + slack_x)
    lo_y, hi_y = -slack_y, max(-slack_y, size - h + slack_y)
    return int(rng.integers(lo_x, hi_x + 1)), int(rng.integers(lo_y, hi_y + 1))


def _paste(a: np.ndarray, ox: int, oy: int, size: int) -> np.ndarray:
    """Patch array `a` placed with its top-left at (ox, oy) on a size×size canvas (clipped)."""
    out = np.zeros((size, size), dtype=a.dtype)
    h, w = a.shape
    x0, y0, x1, y1 = max(ox, 0), max(oy, 0), min(ox + w, size), min(oy + h, size)
    if x0 < x1 and y0 < y1:
        out[y0:y1, x0:x1] = a[y0 - oy:y1 - oy, x0 - ox:x1 - ox]
    return out


def _radius(cls: str, bucket: str, size: int, rng: np.random.Generator) -> float:
    lo, hi = AREA_TARGETS[bucket]
    r = math.sqrt(rng.uniform(lo, hi) / AREA_COEF[cls])
    return min(r, 0.47 * size)


def _floor(area: int, min_visible: float) -> float:
    """Fewest pixels an object must keep in view: `min_visible` of it, and never so few that
    occluders push a large object out of COCO's large range."""
    floor = max(MIN_PIXELS, min_visible * area)
    return max(floor, LARGE + 1) if area > LARGE else floor


def _keypoints(kps: np.ndarray, k: int, owner: np.ndarray, visible: np.ndarray) -> list[float]:
    size = owner.shape[0]
    ys, xs = np.nonzero(visible)
    bx0, bx1, by0, by1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    out: list[float] = []
    for x, y in kps.tolist():
        x, y = round(x, 2), round(y, 2)
        xi, yi = math.floor(x), math.floor(y)
        v = 0
        if 0 <= xi < size and 0 <= yi < size:
            if owner[yi, xi] == k:
                v = 2
            elif owner[yi, xi] >= 0 and bx0 <= x < bx1 and by0 <= y < by1:
                v = 1
        out += [x, y, v] if v else [0, 0, 0]
    return out


def make_scene(cfg: SynthConfig, rng: np.random.Generator) -> tuple[np.ndarray, list[SceneObject]]:
    """One image (uint8, H×W×3) and its visible objects, drawn from `rng` only."""
    size = cfg.image_size
    weights = np.asarray(cfg.class_weights())
    mix = np.asarray(cfg.size_mix, dtype=np.float64)
    n = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
    classes = rng.choice(len(cfg.classes), size=n, p=weights / weights.sum())
    buckets = rng.choice(3, size=n, p=mix / mix.sum())
    radii = [_radius(cfg.classes[c], ("small", "medium", "large")[b], size, rng)
             for c, b in zip(classes, buckets)]
    order = sorted(range(n), key=lambda i: -AREA_COEF[cfg.classes[classes[i]]] * radii[i] ** 2)

    owner = np.full((size, size), -1, dtype=np.int32)
    placed: list[tuple[str, Patch, int, int, int, bool]] = []  # cls, patch, ox, oy, area in image, truncated
    floors = np.zeros(0)  # per placed object: fewest pixels it must keep visible
    for i in order:
        cls = cfg.classes[classes[i]]
        patch = draw_object(cls, radii[i], rng)
        full = int(patch.mask.sum())
        allow_out = bool(rng.uniform() < cfg.truncation)
        for _ in range(PLACEMENT_TRIES):
            ox, oy = _place(patch, size, allow_out, rng)
            m = _paste(patch.mask, ox, oy, size)
            inside = int(m.sum())
            if inside < max(MIN_PIXELS, cfg.min_visible * full):
                continue
            if placed:
                shown = np.bincount(owner[owner >= 0], minlength=len(placed))
                covered = np.bincount(owner[m & (owner >= 0)], minlength=len(placed))
                if np.any(shown - covered < floors):
                    continue
            owner[m] = len(placed)
            placed.append((cls, patch, ox, oy, inside, inside < full))
            floors = np.append(floors, _floor(inside, cfg.min_visible))
            break

    image = background(rng, size)
    for k, (cls, patch, ox, oy, _, _) in enumerate(placed):
        paint = object_colour(cls, rng, size)
        m = owner == k
        image[m] = paint[m]
        d = _paste(patch.detail, ox, oy, size) & m
        image[d] *= 0.25
    image += rng.normal(0, 0.015, image.shape).astype(np.float32)
    image = (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)

    objects = []
    for k, (cls, patch, ox, oy, inside, truncated) in enumerate(placed):
        visible = owner == k
        kps = None
        if cls == PERSON and cfg.keypoints:
            kps = _keypoints(patch.keypoints + [ox, oy], k, owner, visible)
        objects.append(SceneObject(cls=cls, mask=visible, truncated=truncated,
                                   occluded=int(visible.sum()) < inside, keypoints=kps))
    return image, objects
