"""Task registry: a task name from the config → an object implementing `tasks.base.Task`."""

from __future__ import annotations

from ticketlab.errors import TicketlabError
from ticketlab.tasks.base import Task

DETECTION_TASKS = ("detection", "instance_segmentation", "keypoints")


def build_task(name: str, data) -> Task:
    if name == "classification":
        from ticketlab.tasks.classification import ClassificationTask

        return ClassificationTask(num_classes=data.num_classes)
    if name in DETECTION_TASKS:
        from ticketlab.tasks.detection import DetectionTask

        return DetectionTask.from_data(name, data)
    if name == "semantic_segmentation":
        from ticketlab.tasks.segmentation import SemanticSegmentationTask

        return SemanticSegmentationTask(num_classes=data.num_classes, class_names=list(data.class_names))
    raise TicketlabError(f"task: {name!r} is not available yet")
