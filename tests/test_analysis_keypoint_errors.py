"""Ronchi & Perona's keypoint errors on hand-built people: a left/right swap is an Inversion, a
keypoint taken from another person a Swap, a small offset Jitter; OKS equals pycocotools'."""

from __future__ import annotations

import contextlib
import copy
import io
import math

import numpy as np
import pytest
from pycocotools.coco import COCO as RefCOCO
from pycocotools.cocoeval import COCOeval as RefCOCOeval

from ticketlab.analysis.keypoint_errors import keypoint_errors, oks
from ticketlab.tasks.coco_eval import COCO_PERSON_SIGMAS

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

SIGMAS = np.asarray(COCO_PERSON_SIGMAS) / 10.0
FLIP = [0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15]  # COCO's left/right pairs
AREA = 6000.0
SPACING = 40.0  # far enough apart that no two keypoints are "near" (ks ≥ 0.5) each other at this area


def person(x0: float, y0: float) -> np.ndarray:
    """17 keypoints on a grid (left parts on one side, right parts on the other), all labelled."""
    pts = [(1, 0)] + [(0 if j % 2 else 2, 1 + (j - 1) // 2) for j in range(1, 17)]
    return np.array([[x0 + SPACING * c, y0 + SPACING * r, 2] for c, r in pts], dtype=float)


A, B = person(0, 0), person(400, 0)


def scene(*people: np.ndarray) -> dict:
    anns = [{"id": i + 1, "image_id": 1, "category_id": 1, "keypoints": p.ravel().tolist(), "num_keypoints": 17,
             "area": AREA, "bbox": [p[:, 0].min(), p[:, 1].min(), 80, 320], "iscrowd": 0}
            for i, p in enumerate(people)]
    return {"images": [{"id": 1, "width": 1000, "height": 1000, "file_name": "1.png"}], "annotations": anns,
            "categories": [{"id": 1, "name": "person", "keypoints": [str(k) for k in range(17)], "skeleton": []}]}


def det(points: np.ndarray, score: float = 0.9) -> dict:
    k = np.asarray(points, dtype=float).copy()
    k[:, 2] = 1.0
    return {"image_id": 1, "category_id": 1, "keypoints": k.ravel().tolist(), "score": score}


def errors(gt: dict, dets: list[dict]):
    return keypoint_errors(gt, dets, [1], SIGMAS)


def offset_for(ks: float) -> np.ndarray:
    """Per keypoint, the diagonal offset at which COCO's keypoint similarity exp(−d²/(2·area·(2σ)²))
    equals `ks` (solved for d)."""
    d = np.sqrt(-2.0 * math.log(ks) * AREA * (2 * SIGMAS) ** 2)
    return np.stack([d / math.sqrt(2), d / math.sqrt(2), np.zeros(17)], axis=1)


def test_exact_detection_is_all_good():
    found = errors(scene(A, B), [det(A)])
    assert found.keypoints == {"Good": 17, "Jitter": 0, "Inversion": 0, "Swap": 0, "Miss": 0}
    assert (found.matched, found.background, found.missed, found.people) == (1, 0, 1, 2)


def test_left_right_swap_is_inversion():
    order = list(range(17))
    for j in (9, 15):  # left wrist <-> right wrist, left ankle <-> right ankle
        order[j], order[FLIP[j]] = FLIP[j], j
    found = errors(scene(A, B), [det(A[order])])
    assert found.keypoints == {"Good": 13, "Jitter": 0, "Inversion": 4, "Swap": 0, "Miss": 0}


def test_keypoint_from_another_person_is_swap():
    taken = A.copy()
    taken[9] = B[9]  # left wrist placed on the other person's left wrist
    found = errors(scene(A, B), [det(taken)])
    assert found.keypoints == {"Good": 16, "Jitter": 0, "Inversion": 0, "Swap": 1, "Miss": 0}


@pytest.mark.parametrize("ks,category", [(0.9, "Good"), (0.7, "Jitter"), (0.3, "Miss")])
def test_offsets_by_keypoint_similarity(ks, category):
    found = errors(scene(A, B), [det(A + offset_for(ks))])
    assert found.keypoints[category] == 17
    assert found.matched == 1


def test_background_and_missed_people():
    far = person(800, 600)
    found = errors(scene(A, B), [det(A), det(far, score=0.5)])
    assert (found.matched, found.background, found.missed) == (1, 1, 1)
    assert found.shares()["Good"] == 1.0


def test_oks_equals_pycocotools():
    rng = np.random.default_rng(0)
    gt = scene(A, B)
    gt["annotations"][1]["keypoints"][2::3] = [0] * 5 + [2] * 12  # some unlabelled keypoints
    dets = [det(p + np.c_[rng.normal(0, 12, (17, 2)), np.zeros(17)], score=s)
            for p, s in ((A, 0.9), (B, 0.8), (A[FLIP], 0.7))]
    with contextlib.redirect_stdout(io.StringIO()):
        coco = RefCOCO()
        coco.dataset = copy.deepcopy(gt)
        coco.createIndex()
        ev = RefCOCOeval(coco, coco.loadRes(copy.deepcopy(dets)), "keypoints")
        ev.params.kpt_oks_sigmas = SIGMAS
        ev.evaluate()
    ref = np.asarray(ev.ious[(1, 1)])  # detections by descending score × people
    for i, d in enumerate(dets):
        for j, ann in enumerate(gt["annotations"]):
            ours = oks(np.asarray(d["keypoints"]).reshape(-1, 3), np.asarray(ann["keypoints"], float).reshape(-1, 3),
                       ann["area"], SIGMAS)
            assert ours == pytest.approx(ref[i, j], abs=1e-9)
