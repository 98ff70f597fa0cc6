"""Task registry: a task name from the config → an object implementing `tasks.base.Task`."""

from __future__ import annotations

from typing import Optional

from ticketlab.config import CONTRASTIVE_TASKS, SSLConfig
from ticketlab.errors import TicketlabError
from ticketlab.tasks.base import Task

DETECTION_TASKS = ("detection", "instance_segmentation", "keypoints")


def build_task(name: str, data, ssl: Optional[SSLConfig] = None) -> Task:
    if name in CONTRASTIVE_TASKS:
        from ticketlab.tasks.contrastive import MoCoTask, SimCLRTask

        task_cls = MoCoTask if name == "moco" else SimCLRTask
        return task_cls(memory=data.memory, num_classes=data.num_classes, cfg=ssl or SSLConfig(),
                        views=data.val_views)
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
