"""COCO segmentations (polygons or RLE) ↔ binary masks, through the COCO C mask API.

One place for the conversions used by the dataset (annotation → N×H×W uint8 target masks) and by
the evaluator (predicted masks → compressed RLE results), so both sides use exactly the rasteriser
the evaluator uses. That is faster-coco-eval's copy of pycocotools' maskApi (same polygon
rasteriser and RLE codec; tests compare masks with pycocotools' `annToMask`), chosen because
pycocotools 2.0.11's `decode` raises a NumPy 2 DeprecationWarning on every call.

`rle_string_runs` reads a compressed `counts` string back into run lengths. The C API never checks
one: runs that fall short of height·width decode to uninitialised memory, and runs past it are
found only at decode time; so the validator reads every RLE with it before anything is decoded.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from faster_coco_eval.core import mask as mask_utils


def rle_string_runs(counts: str) -> list[int]:
    """Run lengths of a compressed COCO RLE string (the maskApi's rleFrString format).

    Each run is a little-endian series of 5-bit groups stored as chr(48 + group), bit 0x20 meaning
    "another group follows" and bit 0x10 of the last group the sign; from the third run on, a run
    is stored as the difference to the run two before it. Raises ValueError on a malformed string.
    """
    runs: list[int] = []
    i = 0
    while i < len(counts):
        value, shift, more = 0, 0, True
        while more:
            if i == len(counts):
                raise ValueError("it ends in the middle of a run")
            group = ord(counts[i]) - 48
            if not 0 <= group < 64:
                raise ValueError(f"character {counts[i]!r} at {i} is outside '0'..'o'")
            value |= (group & 0x1F) << shift
            more = bool(group & 0x20)
            shift += 5
            i += 1
            if not more and group & 0x10:
                value -= 1 << shift
        if len(runs) > 2:
            value += runs[-2]
        if not 0 <= value < 2**32:
            raise ValueError(f"run {len(runs)} is {value}, outside 0..2^32-1")
        runs.append(value)
    return runs


def segmentation_to_rle(seg: Any, height: int, width: int) -> dict:
    """One (merged) RLE for a polygon list, an uncompressed RLE or a compressed RLE."""
    if isinstance(seg, list):
        polys = [p for p in seg if len(p) >= 6]  # fewer than 3 points cover no pixels
        if not polys:  # an empty mask, written as one run of zeros (no height×width array)
            return mask_utils.frPyObjects({"size": [height, width], "counts": [height * width]}, height, width)
        return mask_utils.merge(mask_utils.frPyObjects(polys, height, width))
    if isinstance(seg.get("counts"), list):
        return mask_utils.frPyObjects(seg, height, width)
    return seg


def segmentation_to_mask(seg: Any, height: int, width: int) -> np.ndarray:
    """H×W uint8 mask (0/1)."""
    return mask_utils.decode(segmentation_to_rle(seg, height, width)).astype(np.uint8)


def segmentation_area(seg: Any, height: int, width: int) -> float:
    return float(mask_utils.area(segmentation_to_rle(seg, height, width)))


def masks_to_rles(masks: np.ndarray) -> list[dict]:
    """N×H×W binary masks → compressed RLEs with `counts` as str (JSON-ready)."""
    if masks.shape[0] == 0:
        return []
    rles = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
    for rle in rles:
        rle["counts"] = rle["counts"].decode("ascii")
    return rles
