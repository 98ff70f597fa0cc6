"""PASCAL VOC 2012 semantic segmentation from disk (`data.format: voc_seg`).

Layout (`root` is e.g. VOCdevkit/VOC2012):
  ImageSets/Segmentation/<split>.txt   one image id a line (train, val, trainval)
  JPEGImages/<id>.jpg                  the images (if JPEGImages/ is absent: images/<id>.png|.jpg,
                                       the layout `ticketlab data synth` writes)
  SegmentationClass/<id>.png           class-index PNGs: VOC's palette PNGs, whose pixel values ARE
                                       the class indices (0 = background, 1..20, 255 = ignore:
                                       object borders and difficult regions); 8-bit grayscale
                                       PNGs holding indices are read the same way
  segmentation_classes.txt             optional: class names one a line, line i = index i; absent =
                                       VOC's 21 (background + the 20 classes)

torchvision's VOCSegmentation insists on a VOCdevkit/VOC<year> directory under its root and on
`.jpg` images, so this reader (a few lines of file listing) takes the year directory itself and
also reads the synthetic set. A mask's value outside the class range is an error naming the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors

from ticketlab.data.detection_image import DEFAULT_MAX_PIXELS, open_image
from ticketlab.data.voc import VOC_CLASSES
from ticketlab.errors import TicketlabError

IGNORE_INDEX = 255
VOC_SEG_CLASSES: tuple[str, ...] = ("background", *VOC_CLASSES)
CLASSES_FILE = "segmentation_classes.txt"
IMAGE_SUFFIXES = (".jpg", ".png", ".jpeg")


def voc_palette() -> list[int]:
    """VOC's colour map as a flat 768-long PIL palette: index i gets the colour whose bits are i's
    bits spread over R, G, B from the high end (the devkit's `labelcolormap`); 255 = (224, 224, 192)."""
    palette = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette += [r, g, b]
    return palette


def read_class_names(root: Path) -> list[str]:
    path = root / CLASSES_FILE
    if not path.is_file():
        return list(VOC_SEG_CLASSES)
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if len(names) < 2 or len(names) > IGNORE_INDEX:
        raise TicketlabError(f"{path}: expected 2 to {IGNORE_INDEX} class names, one a line (background first), "
                             f"got {len(names)}")
    return names


def read_segmentation_ids(root: Path, split: str) -> list[str]:
    path = root / "ImageSets" / "Segmentation" / f"{split}.txt"
    if not path.is_file():
        raise TicketlabError(f"{path}: VOC segmentation image set not found (expected one image id per line)")
    ids = [line.split()[0] for line in path.read_text().splitlines() if line.strip()]
    for i in ids:
        if i.startswith(("/", "\\")) or ".." in Path(i).parts:
            raise TicketlabError(f"{path}: image id {i!r} must be a relative name without '..'")
    if not ids:
        raise TicketlabError(f"{path}: lists no image ids")
    return ids


def _image_path(image_root: Path, image_id: str) -> Optional[Path]:
    for suffix in IMAGE_SUFFIXES:
        path = image_root / f"{image_id}{suffix}"
        if path.is_file():
            return path
    return None


def read_mask(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Class indices (uint8 H×W) of a palette ('P') or grayscale ('L') PNG."""
    with open_image(path, max_pixels) as img:
        if img.mode not in ("P", "L"):
            raise TicketlabError(f"{path}: expected a palette or 8-bit grayscale PNG of class indices, "
                                 f"got mode {img.mode}")
        return np.array(img, dtype=np.uint8)


class VocSegmentation(Dataset):
    """(image, mask) pairs of one image set, as tv_tensors.Image (uint8) / tv_tensors.Mask through
    `transform` (see data/segmentation_transforms.py)."""

    def __init__(self, root: Path, split: str, num_classes: int, transform: Optional[Callable] = None,
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        self.num_classes, self.transform, self.max_pixels = num_classes, transform, max_pixels
        image_root = root / "JPEGImages" if (root / "JPEGImages").is_dir() else root / "images"
        self.items: list[tuple[Path, Path]] = []
        for image_id in read_segmentation_ids(root, split):
            image = _image_path(image_root, image_id)
            if image is None:
                raise TicketlabError(f"{image_root}/{image_id}.jpg: image of id {image_id!r} (split {split}) not found")
            mask = root / "SegmentationClass" / f"{image_id}.png"
            if not mask.is_file():
                raise TicketlabError(f"{mask}: class mask of id {image_id!r} (split {split}) not found")
            self.items.append((image, mask))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        image_path, mask_path = self.items[index]
        with open_image(image_path, self.max_pixels) as img:
            rgb = np.array(img.convert("RGB"))
        mask = read_mask(mask_path, self.max_pixels)
        if mask.shape != rgb.shape[:2]:
            raise TicketlabError(f"{mask_path}: mask is {mask.shape[1]}×{mask.shape[0]} but its image is "
                                 f"{rgb.shape[1]}×{rgb.shape[0]}")
        bad = (mask >= self.num_classes) & (mask != IGNORE_INDEX)
        if bad.any():
            raise TicketlabError(f"{mask_path}: class index {int(mask[bad].max())} is outside "
                                 f"0..{self.num_classes - 1} (and is not the ignore label {IGNORE_INDEX})")
        pair = (tv_tensors.Image(torch.from_numpy(rgb).permute(2, 0, 1)), tv_tensors.Mask(torch.from_numpy(mask)))
        return self.transform(*pair) if self.transform is not None else pair
