"""AP broken down the way paper 001 §4.4 looks at tickets: by object size, per category, easy vs hard.

A ticket's headline AP hides *where* it loses: 001 plots the % change vs the dense model for small,
medium and large objects (Fig. 4), per category sorted by how often the category occurs in the
training data (Fig. 5a), and for the categories the dense model finds easiest and hardest (Fig.
5b–c). Every number here is read from COCOeval's accumulated precision array (iou thresholds ×
recall × category × area range × max detections), the array COCO's own APs/APm/APl are averaged
from, so a size's AP here is COCO's APs/APm/APl of the same detections.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from ticketlab.tasks.coco_eval import run_cocoeval


@dataclass(frozen=True)
class ApBreakdown:
    """AP@[.5:.95] of one iou type, per object size and per category (-1: no ground truth there)."""
    iou_type: str
    by_area: dict[str, float]       # "small" / "medium" / "large" (keypoints: medium, large) -> AP
    by_category: dict[int, float]   # COCO category id -> AP over all sizes


def mean_precision(p: np.ndarray) -> float:
    """COCO's AP of a slice of the precision array: the mean of its defined (> -1) entries, else -1."""
    valid = p[p > -1]
    return float(valid.mean()) if valid.size else -1.0


def ap_breakdown(gt: Mapping[str, Any], results: Sequence[Mapping[str, Any]], iou_type: str,
                 cat_ids: Sequence[int]) -> ApBreakdown:
    ev = run_cocoeval(gt, results, iou_type, cat_ids)
    precision = np.asarray(ev.eval["precision"])
    labels = list(ev.params.areaRngLbl)
    every = labels.index("all")
    last = len(ev.params.maxDets) - 1  # COCO's AP uses the largest max-detections setting
    by_area = {label: mean_precision(precision[:, :, :, a, last]) for a, label in enumerate(labels) if a != every}
    by_category = {int(c): mean_precision(precision[:, :, k, every, last]) for k, c in enumerate(ev.params.catIds)}
    return ApBreakdown(iou_type=iou_type, by_area=by_area, by_category=by_category)


def category_frequency(train_gt: Mapping[str, Any], cat_ids: Sequence[int]) -> dict[int, int]:
    """Training annotations (crowd regions aside) per category: 001's rare-vs-frequent axis."""
    counts = {int(c): 0 for c in cat_ids}
    for ann in train_gt.get("annotations", []):
        cid = ann.get("category_id")
        if cid in counts and not ann.get("iscrowd", 0):
            counts[cid] += 1
    return counts


def percent_change(ticket: float, dense: float) -> Optional[float]:
    """100 · (ticket − dense) / dense, as 001 Fig. 4–5 plot it; None where either AP is undefined
    (-1) or the dense AP is 0 (no change can be expressed relative to it)."""
    if ticket < 0 or dense <= 0:
        return None
    return 100.0 * (ticket - dense) / dense


def easy_and_hard(dense_by_category: Mapping[int, float], k: int = 3) -> tuple[list[int], list[int]]:
    """The k categories with the highest dense AP (easy) and the k with the lowest (hard), as 001
    ranks them by the dense model; categories with dense AP ≤ 0 are left out (001 leaves out the
    category with 0 AP), and with fewer than 2k left each side gets half."""
    ranked = sorted((c for c, ap in dense_by_category.items() if ap > 0),
                    key=lambda c: (-dense_by_category[c], c))
    k = min(k, len(ranked) // 2)
    return ranked[:k], ranked[len(ranked) - k:][::-1] if k else []
