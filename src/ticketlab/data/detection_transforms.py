"""Training augmentation for detection: horizontal flip of the image and of every target it carries.

Resizing and normalisation are NOT done here: torchvision's GeneralizedRCNNTransform does them
inside the model (min_size / max_size), and maps predictions back to the original image size.

A flip must move boxes, masks and keypoints together, and a flipped left wrist is a right wrist:
`keypoint_flip_map` derives the left/right swap from the category's keypoint names, so the data
file is the only source of truth (no hard-coded COCO person order).
Randomness comes from torch's global RNG, which the training loop seeds (and DataLoader reseeds
per worker), so a run is reproducible from its seed.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

Target = dict[str, torch.Tensor]
Transform = Callable[[torch.Tensor, Target], tuple[torch.Tensor, Target]]


def keypoint_flip_map(names: Sequence[str]) -> list[int]:
    """Index permutation for a horizontal flip: `left_x` ↔ `right_x` (also `x_left` ↔ `x_right`).

    Names without a left/right partner map to themselves (a nose stays a nose).
    """
    position = {name: i for i, name in enumerate(names)}
    flip = []
    for i, name in enumerate(names):
        tokens = name.split("_")
        swapped = "_".join({"left": "right", "right": "left"}.get(t, t) for t in tokens)
        flip.append(position.get(swapped, i))
    return flip


def hflip(image: torch.Tensor, target: Target, flip_map: Sequence[int] | None = None) -> tuple[torch.Tensor, Target]:
    """Mirror a C×H×W image and its target (boxes xyxy, masks N×H×W, keypoints N×K×3) left–right."""
    width = image.shape[-1]
    out = dict(target)
    if "boxes" in target:
        boxes = target["boxes"].clone()
        boxes[:, [0, 2]] = width - target["boxes"][:, [2, 0]]
        out["boxes"] = boxes
    if "masks" in target:
        out["masks"] = target["masks"].flip(-1)
    if "keypoints" in target:
        kps = target["keypoints"].clone()
        kps[..., 0] = width - kps[..., 0]
        kps[kps[..., 2] == 0] = 0  # unlabelled points stay (0, 0, 0), as COCO writes them
        if flip_map is not None:
            kps = kps[:, list(flip_map)]
        out["keypoints"] = kps
    return image.flip(-1), out


class RandomHorizontalFlip:
    """Flip with probability `p`, drawn from torch's global RNG."""

    def __init__(self, p: float = 0.5, flip_map: Sequence[int] | None = None) -> None:
        self.p = p
        self.flip_map = list(flip_map) if flip_map is not None else None

    def __call__(self, image: torch.Tensor, target: Target) -> tuple[torch.Tensor, Target]:
        if torch.rand(()) < self.p:
            return hflip(image, target, self.flip_map)
        return image, target
