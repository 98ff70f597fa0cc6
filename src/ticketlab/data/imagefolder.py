"""Image folders (one sub-directory per class), e.g. an ImageNet-style train/val tree.

Read with torchvision's ImageFolder. The validation split uses the training split's class list,
so a class absent from val/ cannot shift the label indices of the others, and a class present only
in val/ is an error. Files are decoded by `detection_image.load_rgb`, as for detection: every mode
(grayscale, palette, RGBA, 16-bit) becomes RGB in [0, 1] (PIL's own RGB conversion would saturate
16-bit pixels above 255 to white), and an unreadable file is a one-line error naming it.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Callable

import torch
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS

from ticketlab.data.detection_image import DEFAULT_MAX_PIXELS, load_rgb
from ticketlab.errors import TicketlabError


class _FolderWithClasses(ImageFolder):
    """ImageFolder whose class → index mapping is given instead of read from the directory."""

    def __init__(self, root: str, classes: list[str], transform: Callable, max_pixels: int) -> None:
        self._given_classes = classes
        super().__init__(root, transform=transform, loader=partial(_load, max_pixels=max_pixels), allow_empty=True)

    def find_classes(self, directory):  # type: ignore[override]
        return list(self._given_classes), {c: i for i, c in enumerate(self._given_classes)}


def _load(path: str, max_pixels: int) -> torch.Tensor:
    return load_rgb(Path(path), max_pixels)


def _class_dirs(path: Path) -> list[str]:
    return sorted(d.name for d in path.iterdir() if d.is_dir() and not d.name.startswith("."))


def read_imagefolder(
    root: Path, train_dir: str, val_dir: str, train_transform: Callable, val_transform: Callable,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> tuple[ImageFolder, ImageFolder, list[str]]:
    splits = {"data.train": root / train_dir, "data.val": root / val_dir}
    for key, path in splits.items():
        if not path.is_dir() or not _class_dirs(path):
            raise TicketlabError(
                f"{key}: expected an image folder at {path} with one sub-directory of images per class "
                f"({', '.join(sorted(IMG_EXTENSIONS))})"
            )
    train_path, val_path = splits["data.train"], splits["data.val"]
    classes = _class_dirs(train_path)
    extra = sorted(set(_class_dirs(val_path)) - set(classes))
    if extra:
        raise TicketlabError(f"data.val: class folders {', '.join(extra[:5])} in {val_path} are not in {train_path}")
    try:
        train = _FolderWithClasses(str(train_path), classes, train_transform, max_pixels)
        val = _FolderWithClasses(str(val_path), classes, val_transform, max_pixels)
    except FileNotFoundError as e:
        raise TicketlabError(f"data.root={root}: {e}") from None
    for key, ds in (("data.train", train), ("data.val", val)):
        if len(ds) == 0:
            raise TicketlabError(f"{key}: no images found under {ds.root} (expected {', '.join(sorted(IMG_EXTENSIONS))})")
    return train, val, classes
