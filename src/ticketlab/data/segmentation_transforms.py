"""Paired image + mask transforms for semantic segmentation, and the batch collate.

torchvision's transforms v2 transform an `Image` and a `Mask` together with one draw of
randomness, resizing masks with nearest-neighbour (labels are never blended) and padding them
with whatever `fill` says per type — here VOC's ignore label 255, so padded pixels are neither
trained on nor scored. The recipe is torchvision's segmentation reference: random rescale of the
shorter side to 0.5–2× the crop size, horizontal flip, random crop (padded where the image is
smaller). Evaluation keeps every image at its own resolution, as VOC's mIoU is defined on the
original pixels; `collate_segmentation` pads a batch to its largest image (mask padding = 255).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision import tv_tensors
from torchvision.transforms import v2

from ticketlab.data.transforms import Stats
from ticketlab.data.voc_seg import IGNORE_INDEX

SCALE_RANGE = (0.5, 2.0)


def _finish(stats: Stats) -> list[v2.Transform]:
    return [v2.ToDtype({tv_tensors.Image: torch.float32, "others": None}, scale=True),
            v2.Normalize(list(stats.mean), list(stats.std))]


def segmentation_transforms(stats: Stats, crop_size: int, augment: bool) -> tuple[v2.Compose, v2.Compose]:
    """(train, eval) transforms taking and returning an (Image, Mask) pair."""
    finish = _finish(stats)
    evaluation = v2.Compose(finish)
    if not augment:
        return evaluation, evaluation
    lo, hi = (round(s * crop_size) for s in SCALE_RANGE)
    train = v2.Compose([
        v2.RandomResize(lo, hi + 1, antialias=True),
        v2.RandomHorizontalFlip(),
        v2.RandomCrop(crop_size, pad_if_needed=True, fill={tv_tensors.Image: 0, tv_tensors.Mask: IGNORE_INDEX}),
        *finish,
    ])
    return train, evaluation


def collate_segmentation(batch: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """[(image C×H×W, mask H×W), …] → (images B×C×H×W, masks B×H×W int64), padded bottom/right to the
    batch's largest size with 0 (images, i.e. the mean after normalisation) and IGNORE_INDEX (masks)."""
    h = max(img.shape[-2] for img, _ in batch)
    w = max(img.shape[-1] for img, _ in batch)
    images, masks = [], []
    for img, mask in batch:
        pad = (0, w - img.shape[-1], 0, h - img.shape[-2])
        images.append(F.pad(img.as_subclass(torch.Tensor), pad, value=0.0))
        masks.append(F.pad(mask.as_subclass(torch.Tensor).long(), pad, value=IGNORE_INDEX))
    return torch.stack(images), torch.stack(masks)
