"""Colours and textures of the synthetic scenes.

Each class keeps one hue and one texture (with jitter), so appearance is a consistent cue a small
detector can learn from scratch, while shape stays the cue that separates classes of similar
colour. The background is textured but desaturated, so objects stand out without being trivial
(low-frequency blotches, fine noise and faint stripes).
"""

from __future__ import annotations

import colorsys
import math

import numpy as np
from PIL import Image

# class -> (hue in [0, 1), texture)
APPEARANCE = {
    "person": (0.07, "solid"),
    "disc": (0.98, "stripes"),
    "square": (0.60, "checker"),
    "ring": (0.15, "solid"),
    "triangle": (0.33, "dots"),
    "hexagon": (0.75, "checker"),
    "star": (0.88, "dots"),
    "cross": (0.50, "stripes"),
}


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Low-frequency noise in [-1, 1]: a coarse random grid upsampled bilinearly."""
    grid = rng.uniform(-1, 1, (cells, cells)).astype(np.float32)
    img = Image.fromarray(grid, mode="F").resize((size, size), Image.BILINEAR)
    return np.asarray(img, dtype=np.float32)


def background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A textured, desaturated (size, size, 3) float image in [0, 1]."""
    hue, sat, val = rng.uniform(0, 1), rng.uniform(0.05, 0.3), rng.uniform(0.3, 0.7)
    base = np.array(colorsys.hsv_to_rgb(hue, sat, val), dtype=np.float32)
    img = np.broadcast_to(base, (size, size, 3)).copy()
    img += 0.12 * _smooth_noise(rng, size, int(rng.integers(3, 8)))[..., None]
    img += 0.04 * np.stack([_smooth_noise(rng, size, 6) for _ in range(3)], -1)
    if rng.uniform() < 0.5:
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
        t = rng.uniform(0, math.pi)
        period = rng.uniform(6, 20)
        img += 0.05 * np.sin(2 * math.pi * (xx * math.cos(t) + yy * math.sin(t)) / period)[..., None]
    return img


def texture(kind: str, rng: np.random.Generator, size: int) -> np.ndarray:
    """A (size, size) float pattern in [-1, 1] of the given texture kind, random phase/scale."""
    if kind == "solid":
        return np.zeros((size, size), dtype=np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    period = rng.uniform(4.0, 7.0)
    t = rng.uniform(0, math.pi)
    u = xx * math.cos(t) + yy * math.sin(t) + rng.uniform(0, period)
    v = -xx * math.sin(t) + yy * math.cos(t) + rng.uniform(0, period)
    w = 2 * math.pi / period
    if kind == "stripes":
        return np.sign(np.sin(w * u)).astype(np.float32)
    if kind == "checker":
        return np.sign(np.sin(w * u) * np.sin(w * v)).astype(np.float32)
    if kind == "dots":
        return np.where(np.cos(w * u) + np.cos(w * v) > 1.0, 1.0, -0.3).astype(np.float32)
    raise ValueError(f"unknown texture {kind!r}")


def object_colour(cls: str, rng: np.random.Generator, size: int) -> np.ndarray:
    """The (size, size, 3) paint of one object of class `cls`: class hue, jittered, textured."""
    hue, kind = APPEARANCE[cls]
    rgb = colorsys.hsv_to_rgb((hue + rng.uniform(-0.03, 0.03)) % 1.0,
                              rng.uniform(0.6, 0.95), rng.uniform(0.65, 0.95))
    tex = texture(kind, rng, size)
    contrast = rng.uniform(0.2, 0.3)
    return np.asarray(rgb, dtype=np.float32) * (1.0 + contrast * tex)[..., None]
