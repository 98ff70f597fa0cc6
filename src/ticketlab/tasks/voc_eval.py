"""PASCAL VOC mAP@0.5, with the devkit's rules, from COCO-form ground truth and results.

Paper 001 reports VOC results in VOC's own metric, which differs from COCO's AP50: `difficult`
objects are neither misses nor hits (a detection matched to one is ignored), there are no crowd
regions, and precision is averaged either at 11 recall points (VOC2007's metric, `use_07_metric`)
or as the area under the monotone precision envelope (VOC2010+).

Matching follows the devkit (and py-faster-rcnn's `voc_eval.py`): per class, detections in
descending score order; each takes the ground-truth box of its image with the highest IoU; if that
IoU > 0.5 it is ignored when that box is difficult, a true positive when the box is not yet taken,
else a false positive; below the threshold it is a false positive. IoU is computed on continuous
coordinates; with VOC boxes converted as in `data/voc.py` (xmin - 1, width + 1) this equals the
devkit's "+1" pixel IoU. A class without non-difficult ground truth has no AP and is left out of
the mean.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Mapping, Sequence

import numpy as np


def voc_ap(recall: np.ndarray, precision: np.ndarray, use_07_metric: bool) -> float:
    """Average precision from a recall/precision curve (in detection order)."""
    if use_07_metric:
        ap = 0.0
        for t in np.linspace(0.0, 1.0, 11):
            above = precision[recall >= t]
            ap += (above.max() if above.size else 0.0) / 11.0
        return float(ap)
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], precision, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one xyxy box with each of `boxes` (M×4)."""
    iw = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    ih = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = iw * ih
    union = (box[2] - box[0]) * (box[3] - box[1]) + (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) - inter
    return inter / np.maximum(union, np.finfo(np.float64).eps)


def voc_class_ap(gt: Mapping[str, Any], results: Sequence[Mapping[str, Any]], cat_id: int,
                 iou_threshold: float = 0.5, use_07_metric: bool = True) -> float | None:
    """AP of one category; None when it has no non-difficult ground truth."""
    boxes: dict[int, list[list[float]]] = defaultdict(list)
    difficult: dict[int, list[bool]] = defaultdict(list)
    for ann in gt["annotations"]:
        if ann["category_id"] != cat_id:
            continue
        x, y, w, h = ann["bbox"]
        boxes[ann["image_id"]].append([x, y, x + w, y + h])
        difficult[ann["image_id"]].append(bool(ann.get("difficult", ann.get("iscrowd", 0))))
    npos = sum(not d for flags in difficult.values() for d in flags)
    if npos == 0:
        return None
    gt_boxes = {i: np.asarray(b, dtype=np.float64) for i, b in boxes.items()}
    taken = {i: np.zeros(len(b), dtype=bool) for i, b in boxes.items()}
    dets = sorted((r for r in results if r["category_id"] == cat_id), key=lambda r: -r["score"])
    tp = np.zeros(len(dets))
    fp = np.zeros(len(dets))
    for d, det in enumerate(dets):
        x, y, w, h = det["bbox"]
        g = gt_boxes.get(det["image_id"])
        if g is None:
            fp[d] = 1
            continue
        ious = _iou(np.array([x, y, x + w, y + h], dtype=np.float64), g)
        j = int(np.argmax(ious))
        if ious[j] > iou_threshold:
            if difficult[det["image_id"]][j]:
                continue
            if not taken[det["image_id"]][j]:
                tp[d] = 1
                taken[det["image_id"]][j] = True
            else:
                fp[d] = 1
        else:
            fp[d] = 1
    tp, fp = np.cumsum(tp), np.cumsum(fp)
    recall = tp / npos
    precision = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    return voc_ap(recall, precision, use_07_metric)


def voc_map(gt: Mapping[str, Any], results: Sequence[Mapping[str, Any]], cat_ids: Sequence[int],
            use_07_metric: bool = True) -> tuple[float, dict[int, float]]:
    """(mAP, {category id: AP}) over the categories that have non-difficult ground truth."""
    per_class = {}
    for c in cat_ids:
        ap = voc_class_ap(gt, results, c, use_07_metric=use_07_metric)
        if ap is not None:
            per_class[int(c)] = ap
    mean = float(np.mean(list(per_class.values()))) if per_class else 0.0
    return mean, per_class
