"""Read one image file as a float RGB tensor (3×H×W in [0, 1]) whatever its storage mode.

Detection datasets mix grayscale, palette, RGBA and 16-bit files (COCO has grayscale JPEGs; scans and
synthetic sets often are 16-bit PNGs). The models want three channels in [0, 1], so every mode is
mapped here, once: 8-bit modes through PIL's RGB conversion (alpha is dropped, not composited),
16/32-bit integer modes scaled by 1/65535, float modes clipped to [0, 1]. EXIF orientation is NOT
applied: COCO and VOC annotations refer to the pixels as stored.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ticketlab.errors import TicketlabError

_SIXTEEN_BIT_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N")


def read_size(path: Path) -> tuple[int, int]:
    """(width, height) from the file header, without decoding the pixels."""
    try:
        with Image.open(path) as img:
            return img.size
    except (OSError, UnidentifiedImageError) as e:
        raise TicketlabError(f"{path}: not a readable image ({e.__class__.__name__})") from None


def load_rgb(path: Path) -> torch.Tensor:
    """Decode `path` into a float32 tensor 3×H×W with values in [0, 1]."""
    try:
        with Image.open(path) as img:
            img.load()
            array = _to_float_rgb(img)
    except (OSError, UnidentifiedImageError, SyntaxError) as e:
        raise TicketlabError(f"{path}: not a readable image ({e.__class__.__name__})") from None
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def _to_float_rgb(img: Image.Image) -> np.ndarray:
    mode = img.mode
    if mode in _SIXTEEN_BIT_MODES:
        gray = np.asarray(img, dtype=np.float32) / 65535.0
        return np.repeat(np.clip(gray, 0.0, 1.0)[..., None], 3, axis=2)
    if mode == "F":
        gray = np.asarray(img, dtype=np.float32)
        return np.repeat(np.clip(gray, 0.0, 1.0)[..., None], 3, axis=2)
    if mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img, dtype=np.float32) / 255.0
