"""COCO metrics for detection, instance segmentation and keypoints, via faster-coco-eval.

Model outputs become COCO *result* records (bbox xywh, original category id, score; masks as
compressed RLE of the mask probability thresholded at 0.5; keypoints as flat x, y, score), and are
scored with faster-coco-eval's `COCOeval_faster`, the C++ re-implementation of pycocotools'
COCOeval that gives the same numbers several times faster (tests compare the two to 1e-6).

Metric names: `<type>_AP`, `_AP50`, `_AP75`, `_APs`, `_APm`, `_APl`, `_AR1`, `_AR10`, `_AR100`,
`_ARs`, `_ARm`, `_ARl` for bbox / segm; `keypoints_AP`, `_AP50`, `_AP75`, `_APm`, `_APl`, `_AR`,
`_AR50`, `_AR75`, `_ARm`, `_ARl` for keypoints. As in COCO, -1 means "undefined" (no ground truth
in that area range). Only the categories the model predicts (`cat_ids`) are scored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch
from faster_coco_eval import COCO, COCOeval_faster

from ticketlab.atomic import atomic_write_text
from ticketlab.data.detection_masks import masks_to_rles

DET_STATS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
KP_STATS = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")
COCO_PERSON_SIGMAS = (0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62, 0.62,
                      1.07, 1.07, 0.87, 0.87, 0.89, 0.89)  # ×0.1: pycocotools' 17 person keypoints
_RESULT_FIELDS = {"bbox": "bbox", "segm": "segmentation", "keypoints": "keypoints"}


@dataclass
class CocoScores:
    iou_type: str
    stats: dict[str, float]  # e.g. {"bbox_AP": …}
    per_category: dict[int, float] = field(default_factory=dict)  # COCO category id -> AP@[.5:.95] (-1: no GT)


def outputs_to_results(outputs: Sequence[Mapping[str, torch.Tensor]], image_ids: Sequence[int],
                       label_to_cat: Mapping[int, int], mask_threshold: float = 0.5) -> list[dict[str, Any]]:
    """torchvision detection outputs (one dict per image, original image coordinates) → COCO results.

    Each record has image_id, category_id, score, bbox and, when the model gives them, segmentation
    and keypoints (the combined form Detectron2 also writes).
    """
    results: list[dict[str, Any]] = []
    for out, image_id in zip(outputs, image_ids):
        boxes = out["boxes"].detach().float().cpu()
        if boxes.numel() == 0:
            continue
        xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1).tolist()
        scores = out["scores"].detach().float().cpu().tolist()
        cats = [label_to_cat[int(label)] for label in out["labels"].tolist()]
        rles = None
        if "masks" in out:
            binary = (out["masks"].detach().cpu()[:, 0] > mask_threshold).numpy().astype(np.uint8)
            rles = masks_to_rles(binary)
        kps = None
        if "keypoints" in out:
            k = out["keypoints"].detach().float().cpu().clone()
            if "keypoints_scores" in out:
                k[..., 2] = out["keypoints_scores"].detach().float().cpu()
            kps = k.reshape(k.shape[0], -1).tolist()
        for j in range(len(scores)):
            rec: dict[str, Any] = {"image_id": int(image_id), "category_id": cats[j], "bbox": xywh[j],
                                   "score": scores[j]}
            if rles is not None:
                rec["segmentation"] = rles[j]
            if kps is not None:
                rec["keypoints"] = kps[j]
            results.append(rec)
    return results


def results_for(iou_type: str, results: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Fresh records holding only what `iou_type` is scored on (COCO's loaders modify records in place,
    and pick the record type from the first field they find, so bbox must not ride along with segm)."""
    key = _RESULT_FIELDS[iou_type]
    return [{"image_id": r["image_id"], "category_id": r["category_id"], "score": r["score"], key: r[key]}
            for r in results if key in r]


def save_results(path: str | Path, results: Sequence[Mapping[str, Any]]) -> None:
    """Write COCO results (the list `outputs_to_results` makes) as JSON, atomically."""
    atomic_write_text(Path(path), json.dumps(list(results)))


def keypoint_sigmas(gt: Mapping[str, Any], cat_ids: Sequence[int]) -> list[float]:
    """OKS sigmas: a category's own `keypoint_sigmas` list if it has one; COCO's for 17 keypoints;
    otherwise one sigma for all, the mean of COCO's (0.0717)."""
    cats = {c["id"]: c for c in gt["categories"]}
    cat = cats[cat_ids[0]]
    k = len(cat.get("keypoints") or [])
    if isinstance(cat.get("keypoint_sigmas"), list) and len(cat["keypoint_sigmas"]) == k:
        return [float(s) for s in cat["keypoint_sigmas"]]
    if k == len(COCO_PERSON_SIGMAS):
        return [s / 10.0 for s in COCO_PERSON_SIGMAS]
    return [float(np.mean(COCO_PERSON_SIGMAS)) / 10.0] * k


def run_cocoeval(gt: Mapping[str, Any], results: Sequence[Mapping[str, Any]], iou_type: str,
                 cat_ids: Sequence[int] | None = None) -> COCOeval_faster:
    """COCOeval on `results` for one iou_type, evaluated and accumulated (its `eval` arrays filled)."""
    coco_gt = COCO(_record_copy(gt), print_function=_quiet)
    coco_dt = coco_gt.loadRes(results_for(iou_type, results))
    cat_ids = sorted(cat_ids) if cat_ids is not None else sorted(coco_gt.getCatIds())
    sigmas = keypoint_sigmas(gt, cat_ids) if iou_type == "keypoints" else None
    ev = COCOeval_faster(coco_gt, coco_dt, iou_type, print_function=_quiet, kpt_oks_sigmas=sigmas)
    ev.params.catIds = list(cat_ids)
    ev.params.imgIds = sorted(coco_gt.getImgIds())
    ev.evaluate()
    ev.accumulate()
    return ev


def evaluate_coco(gt: Mapping[str, Any], results: Sequence[Mapping[str, Any]], iou_type: str,
                  cat_ids: Sequence[int] | None = None) -> CocoScores:
    """Score `results` against the ground truth dict `gt` for one iou_type (bbox | segm | keypoints)."""
    ev = run_cocoeval(gt, results, iou_type, cat_ids)
    ev.summarize()
    names = KP_STATS if iou_type == "keypoints" else DET_STATS
    stats = {f"{iou_type}_{n}": float(v) for n, v in zip(names, np.asarray(ev.stats)[: len(names)])}
    precision = ev.eval["precision"]  # T × R × K × A × M
    per_category = {}
    for k, cid in enumerate(ev.params.catIds):
        p = precision[:, :, k, 0, -1]
        per_category[int(cid)] = float(p[p > -1].mean()) if (p > -1).any() else -1.0
    return CocoScores(iou_type=iou_type, stats=stats, per_category=per_category)


def _record_copy(gt: Mapping[str, Any]) -> dict[str, Any]:
    """A copy deep enough that COCOeval's in-place additions (ignore flags, cached RLEs, ids) stay
    out of the caller's ground truth: new lists of new top-level records; their values are shared."""
    out = dict(gt)
    for key in ("images", "annotations", "categories"):
        out[key] = [dict(record) for record in gt.get(key, [])]
    return out


def _quiet(*args: Any, **kwargs: Any) -> None:
    return None
