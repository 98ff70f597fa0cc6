"""YOLO anchors fitted to a data set: k-means on box shapes with 1 − IoU as the distance.

YOLOv2 (Redmon & Farhadi 2017, "Dimension Clusters") picks its anchors this way, and YOLOv3/v4 keep
the procedure (darknet's `detector calc_anchors`, which YOLOv4's README asks for on a new data set):
boxes are compared by shape only (both centred at the origin), so a large box is not penalised
more than a small one, as a Euclidean distance would. YOLOv4's COCO anchors (`yolo_boxes.py`) fit
COCO at 608 px; on another data set and input size they can leave a stride without a single box
(the synthetic scenes at 128 px: no box is near a stride-8 anchor), hence this.
"""

from __future__ import annotations

import torch
from torchvision.ops import box_iou

from ticketlab.errors import TicketlabError

MAX_ITERATIONS = 300


def _centred(wh: torch.Tensor) -> torch.Tensor:
    return torch.cat((-wh / 2, wh / 2), dim=-1)


def shape_iou(wh: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """(B, A) IoU of box shapes (B, 2) with anchor shapes (A, 2), both centred at the origin."""
    return box_iou(_centred(wh), _centred(anchors))


def dimension_clusters(wh: torch.Tensor, k: int = 9) -> torch.Tensor:
    """k anchor shapes (k, 2) for the box shapes `wh` (B, 2, pixels), smallest area first.

    Lloyd's k-means with d = 1 − IoU: each box joins the centroid it overlaps most, each centroid
    moves to the mean shape of its boxes, until no box changes cluster. Deterministic: the start is
    the boxes at the k area quantiles (no random restarts, so the same boxes give the same anchors).
    """
    wh = wh.double()
    if wh.ndim != 2 or wh.shape[1] != 2 or (wh <= 0).any():
        raise TicketlabError(f"anchor clustering: expected positive box widths and heights (B × 2), got {tuple(wh.shape)}")
    if len(wh) < k:
        raise TicketlabError(f"anchor clustering: {k} anchors need at least {k} boxes, got {len(wh)}")
    by_area = wh[(wh[:, 0] * wh[:, 1]).argsort()]
    centroids = by_area[((torch.arange(k, dtype=torch.float64) + 0.5) * len(wh) / k).long()].clone()
    members = None
    for _ in range(MAX_ITERATIONS):
        nearest = shape_iou(wh, centroids).argmax(dim=1)
        if members is not None and torch.equal(nearest, members):
            break
        members = nearest
        for j in range(k):
            if (nearest == j).any():  # an empty cluster keeps its centroid
                centroids[j] = wh[nearest == j].mean(dim=0)
    return centroids[(centroids[:, 0] * centroids[:, 1]).argsort()].float()
