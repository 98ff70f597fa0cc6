"""Keypoint AP after fixing each Ronchi & Perona error type, on hand-built people whose detections
each carry known errors, so the AP of every row follows from which detections become hits."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ticketlab.analysis.keypoint_pr import ROWS, fix_keypoints, keypoint_fix_curves
from ticketlab.tasks.coco_eval import COCO_PERSON_SIGMAS

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

SIGMAS = np.asarray(COCO_PERSON_SIGMAS) / 10.0
FLIP = [0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15]  # COCO's left/right pairs
AREA = 6000.0
SPACING = 40.0  # at this area no two keypoints of a person are "near" (ks ≥ 0.5) each other
FAR = np.array([500.0, 500.0, 0.0])


def person(x0: float = 0.0) -> np.ndarray:
    pts = [(1, 0)] + [(0 if j % 2 else 2, 1 + (j - 1) // 2) for j in range(1, 17)]
    return np.array([[x0 + SPACING * c, 20 + SPACING * r, 2] for c, r in pts], dtype=float)


def jitter(ks: float) -> np.ndarray:
    """Per keypoint, the diagonal offset at which COCO's keypoint similarity equals `ks`."""
    d = np.sqrt(-2.0 * math.log(ks) * AREA * (2 * SIGMAS) ** 2)
    return np.stack([d / math.sqrt(2), d / math.sqrt(2), np.zeros(17)], axis=1)


P = person()
OTHER = person(400.0)  # the second person of image 4


def detections() -> list[dict]:
    d1 = P.copy()                                    # exact
    d2 = P.copy(); d2[6:] += FAR                     # 11 Miss, OKS 6/17
    d3 = P.copy(); d3[1:12] = P[FLIP[1:12]]          # 11 Inversion (left ↔ right), OKS 6/17
    d4 = P.copy(); d4[8:14] = OTHER[8:14]; d4[14:] += FAR  # 6 Swap + 3 Miss, OKS 8/17 (6/17 with the other)
    d5 = P.copy(); d5[:9] += jitter(0.55)[:9]; d5[9:] += FAR  # 9 Jitter at ks 0.55 + 8 Miss, OKS 0.29
    d6 = P.copy()                                    # in an image with nobody: background
    out = []
    for image, (pts, score) in enumerate(zip((d1, d2, d3, d4, d5, d6), (0.95, 0.9, 0.85, 0.8, 0.75, 0.7)), 1):
        k = pts.copy()
        k[:, 2] = 1.0
        out.append({"image_id": image, "category_id": 1, "keypoints": k.ravel().tolist(), "score": score})
    return out


def ground_truth() -> dict:
    people = [(1, P), (2, P), (3, P), (4, P), (4, OTHER), (5, P), (7, P)]  # image 6 empty, person 7 undetected
    anns = [{"id": i, "image_id": img, "category_id": 1, "keypoints": p.ravel().tolist(), "num_keypoints": 17,
             "area": AREA, "bbox": [p[:, 0].min(), p[:, 1].min(), 80.0, 320.0], "iscrowd": 0}
            for i, (img, p) in enumerate(people, 1)]
    return {"images": [{"id": i, "width": 1000, "height": 1000, "file_name": f"{i}.png"} for i in range(1, 8)],
            "annotations": anns,
            "categories": [{"id": 1, "name": "person", "keypoints": [str(k) for k in range(17)], "skeleton": []}]}


def coco_ap(hits: list[int], npos: int) -> float:
    """COCO's 101-point AP for detections in score order (1 = hit)."""
    tp = np.cumsum(hits)
    fp = np.cumsum([1 - h for h in hits])
    recall, precision = tp / npos, tp / (tp + fp)
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    total = 0.0
    for r in np.linspace(0, 1, 101):
        i = np.searchsorted(recall, r, side="left")
        total += precision[i] if i < len(precision) else 0.0
    return total / 101


# Which of d1 … d6 reach OKS ≥ 0.5 once a row's errors are fixed (worked out in `detections`).
EXPECTED_AP50 = {
    "Original": ([1, 0, 0, 0, 0, 0], 7),
    "Miss": ([1, 1, 0, 1, 1, 0], 7),              # d2 → 1, d4 → 11/17, d5 → (9·0.55 + 8)/17
    "Swap": ([1, 0, 0, 1, 0, 0], 7),              # d4 → 14/17
    "Inversion": ([1, 0, 1, 0, 0, 0], 7),         # d3 → 1
    "Jitter": ([1, 0, 0, 0, 1, 0], 7),            # d5 → 9/17
    "All keypoint errors": ([1, 1, 1, 1, 1, 0], 7),
    "+ no background FP": ([1, 1, 1, 1, 1], 7),   # d6 removed
    "+ no false negatives": ([1, 1, 1, 1, 1], 5),  # the other person of image 4 and person 7 ignored
}


def test_ap_after_each_fix_is_the_hand_derived_one():
    curves = keypoint_fix_curves(ground_truth(), detections(), [1], SIGMAS)
    assert [c.row for c in curves] == list(ROWS)
    for c in curves:
        hits, npos = EXPECTED_AP50[c.row]
        assert c.ap50 == pytest.approx(coco_ap(hits, npos), abs=1e-9), c.row
    by_row = {c.row: c for c in curves}
    # no detection but d1 is a hit at any OKS at first; at the end every detection is exact
    assert by_row["Original"].ap == pytest.approx(15 / 101, abs=1e-9)
    assert by_row["+ no false negatives"].ap == pytest.approx(1.0)
    # the curve at OKS 0.5: precision 1 up to recall 1/7, then nothing
    orig = by_row["Original"]
    assert orig.precision[orig.recall <= 1 / 7].min() == 1.0 and orig.precision[orig.recall > 1 / 7].max() == 0.0


def test_fixing_moves_only_the_keypoints_of_that_type():
    gt, dets = ground_truth(), detections()
    fixed = fix_keypoints(gt, dets, [1], SIGMAS, ["Swap"])
    d4 = np.asarray(fixed[3]["keypoints"]).reshape(-1, 3)
    assert np.allclose(d4[:14, :2], P[:14, :2])                   # the swapped ones are back on their owner
    assert np.allclose(d4[14:, :2], (P + FAR)[14:, :2])           # the misses stay
    assert fixed[5] == dets[5] and fixed[0]["keypoints"] == dets[0]["keypoints"]
