"""Person keypoint detection (Keypoint R-CNN, paper 001): detection plus K keypoints per object.

Trains on COCO boxes and keypoints (only categories with keypoint names become labels); scored
on COCO bbox and keypoints (OKS), headline `keypoints_AP` (the report draws both curves).
"""

from __future__ import annotations

from ticketlab.data.bundle import BOXES, KEYPOINT_COORDS
from ticketlab.models.spec import KEYPOINT_DETECTOR
from ticketlab.registry import TASKS
from ticketlab.tasks.detection import DetectionTask


class KeypointsTask(DetectionTask):
    name = "keypoints"
    iou_types = ("bbox", "keypoints")
    metrics = ("keypoints_AP", "bbox_AP")
    headline = "keypoints_AP"
    scores_voc = False  # VOC's box mAPs are for box-only detection (tasks/detection.py)
    data_needs = frozenset({BOXES, KEYPOINT_COORDS})
    model_kinds = (KEYPOINT_DETECTOR,)


TASKS.register(KeypointsTask.name, KeypointsTask)
