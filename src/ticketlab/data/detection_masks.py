"""COCO segmentations (polygons or RLE) ↔ binary masks, through the COCO C mask API.

One place for the conversions used by the dataset (annotation → N×H×W uint8 target masks) and by
the evaluator (predicted masks → compressed RLE results), so both sides use exactly the rasteriser
the evaluator uses. That is faster-coco-eval's copy of pycocotools' maskApi (same polygon
rasteriser and RLE codec; tests compare masks with pycocotools' `annToMask`), chosen because
pycocotools 2.0.11's `decode` raises a NumPy 2 DeprecationWarning on every call.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from faster_coco_eval.core import mask as mask_utils


def segmentation_to_rle(seg: Any, height: int, width: int) -> dict:
    """One (merged) RLE for a polygon list, an uncompressed RLE or a compressed RLE."""
    if isinstance(seg, list):
        polys = [p for p in seg if len(p) >= 6]  # fewer than 3 points cover no pixels
        if not polys:
            return mask_utils.encode(np.zeros((height, width, 1), dtype=np.uint8, order="F"))[0]
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
