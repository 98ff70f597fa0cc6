"""Our COCO metrics (faster-coco-eval behind `evaluate_coco` / `DetectionTask`) equal pycocotools'
own COCOeval, run here on the same ground truth and detections, for bbox, segm and keypoints."""

from __future__ import annotations

import contextlib
import copy
import io
import json

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO as RefCOCO
from pycocotools.cocoeval import COCOeval as RefCOCOeval

from ticketlab.tasks.coco_eval import DET_STATS, KP_STATS, evaluate_coco, outputs_to_results, results_for
from ticketlab.tasks.instance_segmentation import InstanceSegmentationTask
from ticketlab.tasks.keypoints import KeypointsTask

PYCOCO_NUMPY2 = "ignore:__array__ implementation:DeprecationWarning"  # pycocotools 2.0.11 under NumPy 2
pytestmark = pytest.mark.filterwarnings(PYCOCO_NUMPY2)

PERSON_KPS = ["nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
              "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
              "right_knee", "left_ankle", "right_ankle"]
CATS = [{"id": 3, "name": "car"}, {"id": 7, "name": "dog"},
        {"id": 12, "name": "person", "keypoints": PERSON_KPS, "skeleton": []}]


def _poly(x: float, y: float, w: float, h: float, rng: np.random.Generator) -> list[float]:
    """An irregular hexagon inside the box (so masks differ from boxes)."""
    cx, cy = x + w / 2, y + h / 2
    pts = []
    for k in range(6):
        a = 2 * np.pi * k / 6
        r = rng.uniform(0.7, 1.0)
        pts += [float(np.clip(cx + r * w / 2 * np.cos(a), x, x + w)), float(np.clip(cy + r * h / 2 * np.sin(a), y, y + h))]
    return pts


def _keypoints(x, y, w, h, rng) -> list[float]:
    kps = []
    for _ in PERSON_KPS:
        v = int(rng.choice([0, 1, 2], p=[0.2, 0.3, 0.5]))
        kps += [float(rng.uniform(x, x + w)), float(rng.uniform(y, y + h)), v] if v else [0.0, 0.0, 0]
    return kps


def make_gt(seed: int = 0, n_images: int = 6) -> dict:
    rng = np.random.default_rng(seed)
    images, anns = [], []
    for i in range(1, n_images + 1):
        W, H = int(rng.integers(200, 400)), int(rng.integers(160, 320))
        images.append({"id": i * 10, "file_name": f"{i}.png", "width": W, "height": H})
        for _ in range(int(rng.integers(0, 6)) if i != 2 else 0):  # image 20 has no annotations
            side = float(rng.choice([12, 40, 130]))  # small / medium / large
            w, h = side * rng.uniform(0.7, 1.3), side * rng.uniform(0.7, 1.3)
            w, h = min(w, W - 2), min(h, H - 2)
            x, y = float(rng.uniform(0, W - w)), float(rng.uniform(0, H - h))
            cat = int(rng.choice([3, 7, 12]))
            seg = [_poly(x, y, w, h, rng)]
            ann = {"id": len(anns) + 1, "image_id": i * 10, "category_id": cat, "bbox": [x, y, w, h],
                   "segmentation": seg, "iscrowd": 0,
                   "area": float(mask_utils.area(mask_utils.merge(mask_utils.frPyObjects(seg, H, W))))}
            if cat == 12:
                ann["keypoints"] = _keypoints(x, y, w, h, rng)
                ann["num_keypoints"] = sum(1 for v in ann["keypoints"][2::3] if v > 0)
            anns.append(ann)
        if i % 3 == 0:  # a crowd region (uncompressed RLE, as COCO stores them)
            m = np.zeros((H, W), dtype=np.uint8, order="F")
            m[10:70, 20:120] = 1
            rle = mask_utils.encode(m)
            counts = []
            flat = m.flatten(order="F")
            cur, run = 0, 0
            for v in flat:
                if v == cur:
                    run += 1
                else:
                    counts.append(run)
                    cur, run = v, 1
            counts.append(run)
            anns.append({"id": len(anns) + 1, "image_id": i * 10, "category_id": int(rng.choice([3, 12])),
                         "bbox": [float(b) for b in mask_utils.toBbox(rle)], "iscrowd": 1,
                         "segmentation": {"size": [H, W], "counts": counts}, "area": float(mask_utils.area(rle)),
                         "keypoints": [0.0] * 51, "num_keypoints": 0})
    return {"images": images, "annotations": anns, "categories": copy.deepcopy(CATS)}


def make_results(gt: dict, seed: int = 1) -> list[dict]:
    """Jittered copies of most GT objects (varied scores, some with wrong class), duplicates,
    false positives, and detections on crowd regions; each with bbox, RLE mask and keypoints."""
    rng = np.random.default_rng(seed)
    sizes = {img["id"]: (img["height"], img["width"]) for img in gt["images"]}
    results = []

    def add(image_id, cat, x, y, w, h, score, kps=None, poly=None):
        H, W = sizes[image_id]
        x, y = float(np.clip(x, 0, W - 2)), float(np.clip(y, 0, H - 2))
        w, h = float(np.clip(w, 1, W - x)), float(np.clip(h, 1, H - y))
        if poly is not None:  # the object's own outline, moved
            m = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects([poly], H, W)))
        else:
            m = np.zeros((H, W), dtype=np.uint8)
            m[int(y):int(np.ceil(y + h)), int(x):int(np.ceil(x + w))] = 1
            m[int(y):int(y + h / 3), int(x):int(x + w / 3)] = 0  # a notch so masks are not boxes
        rle = mask_utils.encode(np.asfortranarray(m))
        rle["counts"] = rle["counts"].decode("ascii")
        if kps is None:
            kps = []
            for _ in PERSON_KPS:
                kps += [float(rng.uniform(x, x + w)), float(rng.uniform(y, y + h)), float(rng.uniform(0, 1))]
        results.append({"image_id": image_id, "category_id": cat, "bbox": [x, y, w, h], "score": float(score),
                        "segmentation": rle, "keypoints": kps})

    for ann in gt["annotations"]:
        x, y, w, h = ann["bbox"]
        if rng.uniform() < 0.15:
            continue  # a miss
        j = rng.normal(0, 0.08, 4) * [w, h, w, h]
        cat = ann["category_id"] if rng.uniform() > 0.1 else 3
        kps = None
        if "keypoints" in ann and not ann["iscrowd"]:
            g = np.array(ann["keypoints"], dtype=float).reshape(-1, 3)
            g[:, :2] += rng.normal(0, 0.05 * max(w, h), (len(g), 2))
            g[:, 2] = rng.uniform(0, 1, len(g))
            kps = g.flatten().tolist()
        poly = None
        if isinstance(ann["segmentation"], list):
            poly = (np.array(ann["segmentation"][0]).reshape(-1, 2) + j[:2]).flatten().tolist()
        add(ann["image_id"], cat, x + j[0], y + j[1], w + j[2], h + j[3], rng.uniform(0.05, 1.0), kps, poly)
        if rng.uniform() < 0.3:  # duplicate, lower score
            add(ann["image_id"], cat, x - j[0], y - j[1], w, h, rng.uniform(0.0, 0.5), kps)
    for img in gt["images"]:
        for _ in range(3):  # false positives
            H, W = sizes[img["id"]]
            add(img["id"], int(rng.choice([3, 7, 12])), rng.uniform(0, W / 2), rng.uniform(0, H / 2),
                rng.uniform(8, W / 2), rng.uniform(8, H / 2), rng.uniform(0, 0.6))
    return results


def pycocotools_stats(gt: dict, results: list[dict], iou_type: str, cat_ids: list[int]) -> tuple[np.ndarray, np.ndarray]:
    with contextlib.redirect_stdout(io.StringIO()):
        ref_gt = RefCOCO()
        ref_gt.dataset = copy.deepcopy(gt)
        ref_gt.createIndex()
        ref_dt = ref_gt.loadRes(copy.deepcopy(results_for(iou_type, results)))
        ev = RefCOCOeval(ref_gt, ref_dt, iou_type)
        ev.params.catIds = cat_ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    precision = ev.eval["precision"]
    per_cat = []
    for k in range(len(cat_ids)):
        p = precision[:, :, k, 0, -1]
        per_cat.append(p[p > -1].mean() if (p > -1).any() else -1.0)
    return np.asarray(ev.stats), np.asarray(per_cat)


@pytest.fixture(scope="module")
def gt_and_results():
    gt = make_gt()
    return gt, make_results(gt)


@pytest.mark.parametrize("iou_type,cat_ids", [("bbox", [3, 7, 12]), ("segm", [3, 7, 12]), ("keypoints", [12])])
def test_matches_pycocotools(gt_and_results, iou_type, cat_ids):
    gt, results = gt_and_results
    assert any(a["iscrowd"] for a in gt["annotations"])
    ref_stats, ref_per_cat = pycocotools_stats(gt, results, iou_type, cat_ids)
    ours = evaluate_coco(gt, results, iou_type, cat_ids)
    names = KP_STATS if iou_type == "keypoints" else DET_STATS
    got = np.array([ours.stats[f"{iou_type}_{n}"] for n in names])
    np.testing.assert_allclose(got, ref_stats, atol=1e-6, rtol=0)
    assert 0.05 < ours.stats[f"{iou_type}_AP"] < 0.95  # a case that discriminates, not all 0 or 1
    np.testing.assert_allclose([ours.per_category[c] for c in cat_ids], ref_per_cat, atol=1e-6, rtol=0)


def test_several_seeds_match_pycocotools():
    for seed in (3, 4):
        gt = make_gt(seed, n_images=4)
        results = make_results(gt, seed + 10)
        for iou_type in ("bbox", "segm"):
            ref, _ = pycocotools_stats(gt, results, iou_type, [3, 7, 12])
            ours = evaluate_coco(gt, results, iou_type, [3, 7, 12])
            np.testing.assert_allclose([ours.stats[f"{iou_type}_{n}"] for n in DET_STATS], ref, atol=1e-6, rtol=0)


def test_task_metrics_match_pycocotools_and_leave_gt_untouched(gt_and_results):
    gt, results = gt_and_results
    before = json.dumps(gt, sort_keys=True)
    task = KeypointsTask(gt, {1: 12})
    metrics = task.evaluate_results(results)
    assert json.dumps(gt, sort_keys=True) == before
    ref_box, _ = pycocotools_stats(gt, results, "bbox", [12])
    ref_kp, _ = pycocotools_stats(gt, results, "keypoints", [12])
    np.testing.assert_allclose([metrics[f"bbox_{n}"] for n in DET_STATS], ref_box, atol=1e-6, rtol=0)
    np.testing.assert_allclose([metrics[f"keypoints_{n}"] for n in KP_STATS], ref_kp, atol=1e-6, rtol=0)
    assert task.headline == "keypoints_AP" and not any(k.startswith("segm_") for k in metrics)

    seg = InstanceSegmentationTask(gt, {1: 3, 2: 7, 3: 12})
    m = seg.evaluate_results(results)
    ref_segm, _ = pycocotools_stats(gt, results, "segm", [3, 7, 12])
    np.testing.assert_allclose([m[f"segm_{n}"] for n in DET_STATS], ref_segm, atol=1e-6, rtol=0)


def test_empty_detections_score_zero(gt_and_results):
    gt, _ = gt_and_results
    task = InstanceSegmentationTask(gt, {1: 3, 2: 7, 3: 12})
    metrics = task.evaluate_results([])
    assert metrics["bbox_AP"] == 0.0 and metrics["segm_AP"] == 0.0 and metrics["bbox_AR100"] == 0.0


class _FixedOutputs(torch.nn.Module):
    """Returns pre-set predictions in loader order: stands in for a trained detector."""

    def __init__(self, outputs: list[dict]) -> None:
        super().__init__()
        self.outputs = outputs
        self.calls = 0

    def forward(self, images, targets=None):
        if targets is not None:  # the validation loss pass (train mode): a constant loss term
            return {"loss_fixed": torch.tensor(0.5)}
        out = self.outputs[self.calls: self.calls + len(images)]
        self.calls += len(images)
        return out


def test_model_outputs_become_results_and_metrics(tmp_path, gt_and_results):
    """torchvision-style outputs → records (xywh, COCO category ids, RLE of mask > 0.5, kp scores),
    and `evaluate` on a loader equals pycocotools on those records."""
    gt, results = gt_and_results
    label_of = {3: 1, 7: 2, 12: 3}
    outputs, batches = [], []
    for img in gt["images"]:
        H, W = img["height"], img["width"]
        mine = [r for r in results if r["image_id"] == img["id"]]
        boxes = torch.tensor([[r["bbox"][0], r["bbox"][1], r["bbox"][0] + r["bbox"][2], r["bbox"][1] + r["bbox"][3]]
                              for r in mine], dtype=torch.float32).reshape(-1, 4)
        probs = torch.stack([torch.from_numpy(mask_utils.decode(r["segmentation"])).float() * 0.9 + 0.05
                             for r in mine])[:, None] if mine else torch.zeros(0, 1, H, W)
        kps = torch.tensor([r["keypoints"] for r in mine], dtype=torch.float32).reshape(-1, 17, 3)
        outputs.append({"boxes": boxes, "labels": torch.tensor([label_of[r["category_id"]] for r in mine]),
                        "scores": torch.tensor([r["score"] for r in mine]), "masks": probs,
                        "keypoints": torch.cat([kps[..., :2], torch.ones_like(kps[..., :1])], -1),
                        "keypoints_scores": kps[..., 2]})
        batches.append(((torch.zeros(3, H, W),), ({"image_id": torch.tensor(img["id"])},)))
    task = InstanceSegmentationTask(gt, {1: 3, 2: 7, 3: 12})
    metrics = task.evaluate(_FixedOutputs(outputs), batches, torch.device("cpu"))
    task.save_detections(tmp_path / "d.json")
    assert json.loads((tmp_path / "d.json").read_text()) == json.loads(json.dumps(task.last_results))
    recs = task.last_results
    in_image_order = [r for img in gt["images"] for r in results if r["image_id"] == img["id"]]
    assert len(recs) == len(results)
    for r, ref in zip(recs, in_image_order):
        assert r["category_id"] == ref["category_id"] and r["image_id"] == ref["image_id"]
        np.testing.assert_allclose(r["bbox"], ref["bbox"], atol=1e-3)
        np.testing.assert_allclose(r["keypoints"], ref["keypoints"], atol=1e-4)
        assert (mask_utils.decode(r["segmentation"]) == mask_utils.decode(ref["segmentation"])).all()
    ref_segm, _ = pycocotools_stats(gt, recs, "segm", [3, 7, 12])
    np.testing.assert_allclose([metrics[f"segm_{n}"] for n in DET_STATS], ref_segm, atol=1e-6, rtol=0)
    task.save_detections(tmp_path / "dets.json")
    saved = json.loads((tmp_path / "dets.json").read_text())
    assert len(saved) == len(recs) and {"bbox", "segmentation", "keypoints", "score"} <= set(saved[0])
    ref_box, _ = pycocotools_stats(gt, saved, "bbox", [3, 7, 12])
    assert abs(metrics["bbox_AP"] - ref_box[0]) < 1e-6


def test_outputs_to_results_without_detections():
    out = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64), "scores": torch.zeros(0)}
    assert outputs_to_results([out], [5], {1: 3}) == []
