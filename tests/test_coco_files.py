"""Tiny COCO datasets written to disk for the detection tests (and a check that pycocotools reads them).

Other test modules import `write_coco_dir` from here (pytest puts tests/ on sys.path).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

PYCOCO_NUMPY2 = "ignore:__array__ implementation:DeprecationWarning"  # pycocotools 2.0.11 under NumPy 2
pytestmark = pytest.mark.filterwarnings(PYCOCO_NUMPY2)

KP_NAMES = ["nose", "left_eye", "right_eye", "left_hand", "right_hand"]
CATEGORIES = [{"id": 5, "name": "cat"}, {"id": 9, "name": "person", "keypoints": KP_NAMES}]


def base_coco() -> dict:
    """Two 40×30 images (the second without annotations) and five annotations:
    1 polygon cat, 2 person with keypoints (polygon), 3 crowd cat (RLE), 4 cat with compressed RLE,
    5 person with keypoints."""
    rle_mask = np.zeros((30, 40), dtype=np.uint8, order="F")
    rle_mask[5:15, 25:35] = 1
    from pycocotools import mask as mask_utils

    compressed = mask_utils.encode(rle_mask)
    compressed["counts"] = compressed["counts"].decode("ascii")
    crowd = np.zeros((30, 40), dtype=np.uint8, order="F")
    crowd[20:28, 2:12] = 1
    crowd_rle = mask_utils.encode(crowd)
    crowd_rle["counts"] = crowd_rle["counts"].decode("ascii")
    return {
        "images": [{"id": 1, "file_name": "train/a.png", "width": 40, "height": 30},
                   {"id": 2, "file_name": "train/b.png", "width": 40, "height": 30}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 5, "bbox": [2.0, 3.0, 10.0, 8.0],
             "segmentation": [[2, 3, 12, 3, 12, 11, 2, 11]], "area": 80.0, "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 9, "bbox": [14.0, 2.0, 8.0, 20.0],
             "segmentation": [[14, 2, 22, 2, 18, 22]], "area": 80.0, "iscrowd": 0,
             "keypoints": [18, 4, 2, 16, 5, 2, 20, 5, 1, 0, 0, 0, 21, 15, 2], "num_keypoints": 4},
            {"id": 3, "image_id": 1, "category_id": 5, "bbox": [2.0, 20.0, 10.0, 8.0],
             "segmentation": crowd_rle, "area": 80.0, "iscrowd": 1},
            {"id": 4, "image_id": 1, "category_id": 5, "bbox": [25.0, 5.0, 10.0, 10.0],
             "segmentation": compressed, "area": 100.0, "iscrowd": 0},
            {"id": 5, "image_id": 1, "category_id": 9, "bbox": [30.0, 18.0, 8.0, 10.0],
             "segmentation": [[30, 18, 38, 18, 38, 28, 30, 28]], "area": 80.0, "iscrowd": 0,
             "keypoints": [34, 20, 2, 33, 19, 1, 35, 19, 2, 31, 26, 2, 37, 26, 2], "num_keypoints": 5},
        ],
        "categories": copy.deepcopy(CATEGORIES),
    }


def write_png(path: Path, seed: int, size: tuple[int, int] = (40, 30), mode: str = "RGB") -> np.ndarray:
    rng = np.random.default_rng(seed)
    w, h = size
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    array = rng.integers(0, 256, (h, w, channels), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array[..., 0] if channels == 1 else array, mode).save(path)
    return array


def write_coco_dir(root: Path, coco: dict | None = None, name: str = "train.json") -> Path:
    """root/<name> + root/images/<file_name> for every image (random RGB PNGs of the listed size)."""
    coco = base_coco() if coco is None else coco
    root.mkdir(parents=True, exist_ok=True)
    for img in coco["images"]:
        write_png(root / "images" / img["file_name"], img["id"], (img["width"], img["height"]))
    path = root / name
    path.write_text(json.dumps(coco))
    return path


def test_pycocotools_reads_the_test_files(tmp_path):
    from pycocotools.coco import COCO

    path = write_coco_dir(tmp_path)
    coco = COCO(str(path))
    assert len(coco.getAnnIds()) == 5 and coco.annToMask(coco.anns[4]).sum() == 100
