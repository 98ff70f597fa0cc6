"""Geometry of the synthetic objects: each class rasterised into a small local patch.

An object is drawn once, at the origin, into a patch just big enough to hold it; the scene then
tries positions for that patch. Sizes are set by a circumradius `r` so that a target area maps to a
size through one coefficient per class (`AREA_COEF`, area ≈ coef·r²). The `person` is a stick figure
facing the camera (its left side on the image's right, as in COCO) with COCO's 17 keypoints, so
COCO's OKS sigmas, flip pairs and skeleton apply unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
from PIL import Image, ImageDraw

KEYPOINT_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
)
# COCO's person skeleton, 1-based keypoint indices.
SKELETON = (
    (16, 14), (14, 12), (17, 15), (15, 13), (12, 13), (6, 12), (7, 13), (6, 7), (6, 8), (7, 9),
    (8, 10), (9, 11), (2, 3), (1, 2), (1, 3), (2, 4), (3, 5), (4, 6), (5, 7),
)

RING_INNER = 0.55
STAR_INNER = 0.45
CROSS_HALF_WIDTH = 0.32
AREA_COEF = {
    "disc": math.pi,
    "square": 2.0,
    "triangle": 3 * math.sqrt(3) / 4,
    "ring": math.pi * (1 - RING_INNER**2),
    "star": 5 * STAR_INNER * math.sin(math.radians(36)),
    "cross": 8 * CROSS_HALF_WIDTH - 4 * CROSS_HALF_WIDTH**2,
    "hexagon": 3 * math.sqrt(3) / 2,
    "person": 0.75,  # measured over random poses; the true area is read off the mask
}


@dataclass
class Patch:
    """An object drawn at the origin: mask of its pixels, a darker detail mask (the person's eyes)
    and keypoints in patch coordinates (None for shapes)."""

    mask: np.ndarray  # bool (h, w)
    detail: np.ndarray  # bool (h, w)
    keypoints: Optional[np.ndarray]  # float (17, 2) x, y


def _rot(points: np.ndarray, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return points @ np.array([[c, s], [-s, c]])


def _regular(n: int, r: float, angle: float, inner: Optional[float] = None) -> np.ndarray:
    k = 2 * n if inner else n
    t = angle + np.arange(k) * 2 * math.pi / k - math.pi / 2
    rad = np.full(k, r) if not inner else np.where(np.arange(k) % 2 == 0, r, r * inner)
    return np.stack([rad * np.cos(t), rad * np.sin(t)], 1)


def _cross(r: float, angle: float) -> np.ndarray:
    w = CROSS_HALF_WIDTH * r
    pts = [(w, -r), (w, -w), (r, -w), (r, w), (w, w), (w, r), (-w, r), (-w, w), (-r, w), (-r, -w),
           (-w, -w), (-w, -r)]
    return _rot(np.array(pts, dtype=np.float64), angle)


def _person(r: float, rng: np.random.Generator) -> tuple[list, list, np.ndarray, float]:
    """Primitives, detail primitives, 17 keypoints and limb width of a figure of height 2r."""
    h = 2 * r
    lw = max(2.0, 0.075 * h)
    head, head_r = np.array([0.0, -0.40 * h]), max(1.5, 0.085 * h)
    sh = {1: np.array([0.13 * h, -0.27 * h]), -1: np.array([-0.13 * h, -0.27 * h])}
    hip = {1: np.array([0.08 * h, 0.02 * h]), -1: np.array([-0.08 * h, 0.02 * h])}
    kp = {"nose": head + [0.0, 0.02 * h]}
    for side, tag in ((1, "left"), (-1, "right")):
        kp[f"{tag}_eye"] = head + [side * 0.035 * h, -0.015 * h]
        kp[f"{tag}_ear"] = head + [side * 0.07 * h, 0.0]
        a = rng.uniform(-0.3, 2.4)  # arm angle from hanging down, outward positive
        b = a + rng.uniform(-0.3, 1.4)
        d1 = np.array([side * math.sin(a), math.cos(a)])
        d2 = np.array([side * math.sin(b), math.cos(b)])
        kp[f"{tag}_shoulder"] = sh[side]
        kp[f"{tag}_elbow"] = sh[side] + 0.17 * h * d1
        kp[f"{tag}_wrist"] = kp[f"{tag}_elbow"] + 0.15 * h * d2
        a = rng.uniform(-0.05, 0.5)
        b = a + rng.uniform(-0.5, 0.15)
        d1 = np.array([side * math.sin(a), math.cos(a)])
        d2 = np.array([side * math.sin(b), math.cos(b)])
        kp[f"{tag}_hip"] = hip[side]
        kp[f"{tag}_knee"] = hip[side] + 0.22 * h * d1
        kp[f"{tag}_ankle"] = kp[f"{tag}_knee"] + 0.22 * h * d2
    tilt = rng.uniform(-0.25, 0.25)
    pts = _rot(np.array([kp[n] for n in KEYPOINT_NAMES]), tilt)
    at = {n: pts[i] for i, n in enumerate(KEYPOINT_NAMES)}
    head = _rot(head[None], tilt)[0]
    prims: list = [("polygon", np.array([at["left_shoulder"], at["right_shoulder"],
                                         at["right_hip"], at["left_hip"]]))]
    for tag in ("left", "right"):
        for a, b in (("shoulder", "elbow"), ("elbow", "wrist"), ("hip", "knee"), ("knee", "ankle")):
            prims.append(("line", np.array([at[f"{tag}_{a}"], at[f"{tag}_{b}"]]), lw))
    neck = (at["left_shoulder"] + at["right_shoulder"]) / 2
    prims.append(("line", np.array([neck, head]), lw))
    for name in KEYPOINT_NAMES[5:]:
        prims.append(("disc", at[name], lw / 2 + 0.5))
    prims.append(("disc", head, head_r))
    eye_r = max(0.6, 0.018 * h)
    details = [("disc", at["left_eye"], eye_r), ("disc", at["right_eye"], eye_r)]
    return prims, details, pts, lw


def _extent(prims: list) -> tuple[float, float, float, float]:
    xs, ys = [], []
    for kind, pts, *rest in prims:
        pad = rest[0] if rest else 0.0
        pts = np.atleast_2d(pts)
        xs += [pts[:, 0].min() - pad, pts[:, 0].max() + pad]
        ys += [pts[:, 1].min() - pad, pts[:, 1].max() + pad]
    return min(xs), min(ys), max(xs), max(ys)


def _draw(prims: list, shape: tuple[int, int], offset: np.ndarray) -> np.ndarray:
    img = Image.new("L", (shape[1], shape[0]), 0)
    draw = ImageDraw.Draw(img)
    for kind, pts, *rest in prims:
        if kind == "polygon":
            draw.polygon([tuple(p) for p in (pts + offset).tolist()], fill=1)
        elif kind == "line":
            draw.line([tuple(p) for p in (pts + offset).tolist()], fill=1, width=max(1, round(rest[0])))
        elif kind in ("disc", "hole"):
            (x, y), rad = (pts + offset).tolist(), rest[0]
            draw.ellipse([x - rad, y - rad, x + rad, y + rad], fill=0 if kind == "hole" else 1)
    return np.asarray(img, dtype=bool)


def draw_object(kind: str, r: float, rng: np.random.Generator) -> Patch:
    """Rasterise one object of class `kind` with circumradius `r` (pixels) into its own patch."""
    angle = float(rng.uniform(0, 2 * math.pi))
    details: list = []
    keypoints = None
    if kind == "disc":
        prims = [("disc", np.zeros(2), r)]
    elif kind == "ring":
        prims = [("disc", np.zeros(2), r), ("hole", np.zeros(2), r * RING_INNER)]
    elif kind == "square":
        prims = [("polygon", _regular(4, r, angle))]
    elif kind == "triangle":
        prims = [("polygon", _regular(3, r, angle))]
    elif kind == "hexagon":
        prims = [("polygon", _regular(6, r, angle))]
    elif kind == "star":
        prims = [("polygon", _regular(5, r, angle, inner=STAR_INNER))]
    elif kind == "cross":
        prims = [("polygon", _cross(r, angle))]
    elif kind == "person":
        prims, details, keypoints, _ = _person(r, rng)
    else:
        raise ValueError(f"unknown synthetic class {kind!r}")
    x0, y0, x1, y1 = _extent(prims)
    offset = np.array([1.0 - math.floor(x0), 1.0 - math.floor(y0)])
    shape = (int(math.ceil(y1 + offset[1])) + 2, int(math.ceil(x1 + offset[0])) + 2)
    mask = _draw(prims, shape, offset)
    detail = _draw(details, shape, offset) & mask if details else np.zeros(shape, dtype=bool)
    if keypoints is not None:
        keypoints = keypoints + offset
    return Patch(mask=mask, detail=detail, keypoints=keypoints)
