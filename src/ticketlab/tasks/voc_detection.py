"""Object detection on VOC-format data: the detection task, headlined by VOC's own metric.

Paper 001 scores its VOC detector with the dataset's code, VOC07 mAP@0.5 (11-point; `difficult`
objects ignored), and so must every summary, report and matching verdict of a VOC run. What a
task reports and is judged by is declared on its class (`tasks/base.py`), so VOC data gets these
classes — same name, training and metrics as `detection`, another headline — chosen by
`DetectionTask.build` from the data's format and `data.voc_ap`:
  11point → `voc07_mAP` (VOC2007 devkit, paper 001's code)   area → `voc_mAP` (VOC2010+)
  coco → `bbox_AP` (paper 002's AP), the VOC mAPs still reported.
"""

from __future__ import annotations

from ticketlab.errors import TicketlabError
from ticketlab.tasks.detection import DetectionTask


class Voc07DetectionTask(DetectionTask):
    metrics = ("voc07_mAP", "voc_mAP", "bbox_AP")
    headline = "voc07_mAP"


class VocAreaDetectionTask(DetectionTask):
    metrics = ("voc_mAP", "voc07_mAP", "bbox_AP")
    headline = "voc_mAP"


class VocCocoApDetectionTask(DetectionTask):
    """COCO's AP@[.5:.95] headlines (paper 002 reports AP, AP50, AP75 on VOC07 test), VOC's mAPs drawn beside it."""
    metrics = ("bbox_AP", "voc07_mAP", "voc_mAP")


VOC_TASKS: dict[str, type[DetectionTask]] = {"11point": Voc07DetectionTask, "area": VocAreaDetectionTask,
                                             "coco": VocCocoApDetectionTask}


def voc_task(voc_ap: str) -> type[DetectionTask]:
    if voc_ap not in VOC_TASKS:
        raise TicketlabError(f"data.voc_ap: expected one of {', '.join(VOC_TASKS)}, got {voc_ap!r}")
    return VOC_TASKS[voc_ap]
