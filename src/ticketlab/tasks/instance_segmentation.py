"""Instance segmentation (Mask R-CNN, paper 001): detection plus a mask per object.

Trains on COCO boxes and instance masks; scored on COCO bbox and segm, headline `segm_AP`
(paper 001 reports both: the report draws the two curves).
"""

from __future__ import annotations

from ticketlab.data.bundle import BOXES, INSTANCE_MASKS
from ticketlab.models.spec import MASK_DETECTOR
from ticketlab.registry import TASKS
from ticketlab.tasks.detection import DetectionTask


class InstanceSegmentationTask(DetectionTask):
    name = "instance_segmentation"
    iou_types = ("bbox", "segm")
    metrics = ("segm_AP", "bbox_AP")
    headline = "segm_AP"
    scores_voc = False  # VOC's box mAPs are for box-only detection (tasks/detection.py)
    data_needs = frozenset({BOXES, INSTANCE_MASKS})
    model_kinds = (MASK_DETECTOR,)


TASKS.register(InstanceSegmentationTask.name, InstanceSegmentationTask)
