"""Semantic masks of the synthetic scenes, in VOC 2012's segmentation layout.

Next to the COCO files, `generate_synthetic` writes
  SegmentationClass/<split>/NNNNNN.png   palette PNG of class indices: 0 = background, i = the i-th
                                         class of `classes` (its COCO category id), 255 = ignore
  ImageSets/Segmentation/<split>.txt     ids "<split>/NNNNNN", whose images are images/<id>.png
  segmentation_classes.txt               background, then the class names, one a line
so `data.format: voc_seg` with `data.root` = the synth directory reads it like VOC 2012.
The masks come from the same visible-object masks as the COCO annotations (no extra random
draws, so the COCO files and images are unchanged). Like VOC's hand-drawn outlines, pixels within
IGNORE_BORDER of a boundary between two labels are marked 255: the loss and mIoU skip them.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from ticketlab.atomic import atomic_write_text
from ticketlab.data.synth.scene import SceneObject
from ticketlab.data.voc_seg import CLASSES_FILE, IGNORE_INDEX, voc_palette

IGNORE_BORDER = 1  # pixels on each side of a label boundary (VOC's outlines are ~5 px at ~500 px)


def semantic_mask(objects: Sequence[SceneObject], classes: Sequence[str], size: int,
                  border: int = IGNORE_BORDER) -> np.ndarray:
    """uint8 (size, size) class indices of one scene, label boundaries widened to `border` px of 255."""
    label = np.zeros((size, size), dtype=np.uint8)
    for obj in objects:  # visible masks never overlap
        label[obj.mask] = classes.index(obj.cls) + 1
    if border <= 0:
        return label
    padded = np.pad(label, border, mode="edge")
    edge = np.zeros((size, size), dtype=bool)
    for dy in range(-border, border + 1):
        for dx in range(-border, border + 1):
            edge |= padded[border + dy:border + dy + size, border + dx:border + dx + size] != label
    label[edge] = IGNORE_INDEX
    return label


def mask_png(mask: np.ndarray) -> bytes:
    """A palette PNG as VOC's SegmentationClass files are: pixel values are the class indices."""
    img = Image.fromarray(mask)  # mode L; putpalette makes it P with the indices untouched
    img.putpalette(voc_palette())
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def write_mask(out: Path, image_id: str, mask: np.ndarray) -> None:
    path = out / "SegmentationClass" / f"{image_id}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(mask_png(mask))


def write_image_set(out: Path, split: str, ids: Sequence[str], classes: Sequence[str]) -> None:
    """The split's id list and the class names: written atomically after the masks (commit point)."""
    atomic_write_text(out / CLASSES_FILE, "".join(f"{n}\n" for n in ("background", *classes)))
    atomic_write_text(out / "ImageSets" / "Segmentation" / f"{split}.txt", "".join(f"{i}\n" for i in ids))
