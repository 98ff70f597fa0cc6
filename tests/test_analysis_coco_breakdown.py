"""The COCO breakdowns (001 §4.4) equal pycocotools' own COCOeval on the same detections, and TIDE
sorts hand-made mistakes into the right error (001 App. C)."""

from __future__ import annotations

import contextlib
import copy
import io
from collections import Counter

import numpy as np
import pytest
from pycocotools.coco import COCO as RefCOCO
from pycocotools.cocoeval import COCOeval as RefCOCOeval

from ticketlab.analysis.coco_breakdown import ap_breakdown, category_frequency, easy_and_hard, percent_change
from ticketlab.analysis.tide_errors import TIDE_ERRORS, tide_errors
from ticketlab.data.synth import SynthConfig, generate_synthetic
from ticketlab.tasks.coco_eval import keypoint_sigmas

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    import json

    out = tmp_path_factory.mktemp("synth")
    generate_synthetic(out, SynthConfig(n_train=3, n_val=10, seed=5))
    return json.loads((out / "val.json").read_text()), json.loads((out / "train.json").read_text())


def noisy_detections(gt: dict, seed: int = 0) -> list[dict]:
    """Each object found with a jittered box and keypoints and a random score, some objects missed,
    plus false positives of random classes: detections with an AP well inside (0, 1)."""
    rng = np.random.default_rng(seed)
    cats = [c["id"] for c in gt["categories"]]
    out = []
    for ann in gt["annotations"]:
        if rng.random() < 0.15:
            continue
        x, y, w, h = ann["bbox"]
        s = rng.uniform(0.0, 0.25)
        rec = {"image_id": ann["image_id"], "category_id": ann["category_id"], "score": float(rng.random()),
               "bbox": [x + s * w * rng.uniform(-1, 1), y + s * h * rng.uniform(-1, 1), w, h],
               "segmentation": ann["segmentation"]}
        if ann.get("keypoints"):
            k = np.asarray(ann["keypoints"], dtype=float).reshape(-1, 3)
            k[:, :2] += rng.normal(0, 0.03 * np.sqrt(ann["area"]), size=(len(k), 2))
            k[:, 2] = 1.0
            rec["keypoints"] = k.ravel().tolist()
        out.append(rec)
        if rng.random() < 0.3:
            fp = copy.deepcopy(rec)
            fp["category_id"], fp["score"] = int(rng.choice(cats)), float(rng.random() * 0.5)
            fp["bbox"] = [x + w * rng.uniform(0.3, 0.8), y, w, h]
            out.append(fp)
    return out


def reference(gt: dict, dets: list[dict], iou_type: str, cat_ids: list[int]) -> RefCOCOeval:
    with contextlib.redirect_stdout(io.StringIO()):
        coco = RefCOCO()
        coco.dataset = copy.deepcopy(gt)
        coco.createIndex()
        field = {"bbox": "bbox", "segm": "segmentation", "keypoints": "keypoints"}[iou_type]
        ev = RefCOCOeval(coco, coco.loadRes([{k: copy.deepcopy(d[k]) for k in
                                              ("image_id", "category_id", "score", field)} for d in dets
                                             if field in d]), iou_type)
        ev.params.catIds = cat_ids
        if iou_type == "keypoints":
            ev.params.kpt_oks_sigmas = np.asarray(keypoint_sigmas(gt, cat_ids))
        ev.evaluate(), ev.accumulate(), ev.summarize()
    return ev


@pytest.mark.parametrize("iou_type", ["bbox", "segm", "keypoints"])
def test_size_and_category_ap_equal_pycocotools(synth, iou_type):
    gt, _ = synth
    cat_ids = [c["id"] for c in gt["categories"] if c.get("keypoints")] if iou_type == "keypoints" else \
        [c["id"] for c in gt["categories"]]
    dets = noisy_detections(gt)
    ours = ap_breakdown(gt, dets, iou_type, cat_ids)
    ref = reference(gt, dets, iou_type, cat_ids)
    # COCO's summary: det APs, APm, APl at stats[3:6]; keypoints APm, APl at stats[3:5]
    expected = dict(zip(("medium", "large") if iou_type == "keypoints" else ("small", "medium", "large"),
                        ref.stats[3:6]))
    assert ours.by_area == pytest.approx(expected, abs=1e-9)
    assert 0.05 < max(expected.values()) < 0.99  # a breakdown with something to compare
    for cid in cat_ids:
        one = reference(gt, dets, iou_type, [cid])
        assert ours.by_category[cid] == pytest.approx(one.stats[0], abs=1e-9), cid


def test_frequency_and_easy_hard_and_change(synth):
    gt, train = synth
    cat_ids = [c["id"] for c in train["categories"]]
    counted = Counter(a["category_id"] for a in train["annotations"] if not a["iscrowd"])
    assert category_frequency(train, cat_ids) == {c: counted.get(c, 0) for c in cat_ids}
    easy, hard = easy_and_hard({1: 0.9, 2: 0.1, 3: 0.5, 4: 0.0, 5: -1.0, 6: 0.7, 7: 0.3}, k=2)
    assert (easy, hard) == ([1, 6], [2, 7])
    assert easy_and_hard({1: 0.5, 2: 0.4, 3: 0.0}) == ([1], [2])
    assert percent_change(0.3, 0.4) == pytest.approx(-25.0)
    assert percent_change(0.3, 0.0) is None and percent_change(-1.0, 0.4) is None


def hand_made_scene() -> dict:
    """Four 100×100 images, each with a class-1 and a class-2 square far apart (RLE masks)."""
    from pycocotools import mask as mask_utils

    images, anns = [], []
    for i in range(1, 5):
        images.append({"id": i, "file_name": f"{i}.png", "width": 100, "height": 100})
        for cat, (x, y) in ((1, (5, 5)), (2, (55, 50))):
            w = h = 20 + 5 * i
            m = np.zeros((100, 100), dtype=np.uint8, order="F")
            m[y:y + h, x:x + w] = 1
            rle = mask_utils.encode(m)
            rle["counts"] = rle["counts"].decode()
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": cat, "bbox": [x, y, w, h],
                         "area": w * h, "segmentation": rle, "iscrowd": 0})
    return {"images": images, "annotations": anns,
            "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_tide_puts_hand_made_mistakes_in_their_error(iou_type):
    gt = hand_made_scene()
    perfect = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"],
                "segmentation": a["segmentation"], "score": 0.95 - 0.1 * k} for k, a in enumerate(gt["annotations"])]
    wrong_class = [{**d, "category_id": 3 - d["category_id"]} if k % 2 else d for k, d in enumerate(perfect)]
    missing = perfect[::2]
    doubled = perfect + [{**d, "score": d["score"] - 0.01} for d in perfect[::2]]  # ranked above later hits
    found = tide_errors(gt, {"perfect": perfect, "class": wrong_class, "missing": missing, "dupe": doubled,
                             "none": []}, iou_type, [1, 2])
    assert found["perfect"]["AP50"] == pytest.approx(100.0)
    assert all(found["perfect"][e] == 0 for e in TIDE_ERRORS)
    for name, error in (("class", "Cls"), ("missing", "Miss"), ("dupe", "Dupe")):
        assert found[name][error] > 0, name
        assert all(found[name][e] == 0 for e in TIDE_ERRORS if e != error), name
    assert found["none"] == {"AP50": 0.0, **{e: None for e in TIDE_ERRORS}}
