"""Object detection (Faster R-CNN), and the base of the other COCO tasks.

`instance_segmentation` (tasks/instance_segmentation.py) and `keypoints` (tasks/keypoints.py)
differ from it only in which COCO iou types are scored and which annotations they train on:
  detection → bbox;  instance_segmentation → bbox + segm;  keypoints → bbox + keypoints,
with the headline `bbox_AP`, `segm_AP` or `keypoints_AP`. The loss is torchvision's own loss dict
(the model computes it in train mode), summed into 'loss'. Data converted from VOC XML, and any data
of a box-only task (paper 002 scores its detectors on VOC07 test), also get VOC's metric:
`voc07_mAP` (11-point, VOC2007 test protocol) and `voc_mAP` (area, VOC2010+).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping

import torch
from torch import nn

from ticketlab.data.bundle import BOXES
from ticketlab.models.spec import BOX_DETECTOR
from ticketlab.registry import TASKS
from ticketlab.tasks.base import Task
from ticketlab.tasks.coco_eval import evaluate_coco, outputs_to_results, results_for, save_results
from ticketlab.tasks.voc_eval import voc_map


class DetectionTask(Task):
    name = "detection"
    iou_types = ("bbox",)
    metrics = ("bbox_AP", "voc07_mAP")
    headline = "bbox_AP"
    higher_is_better = True
    data_needs = frozenset({BOXES})
    model_kinds = (BOX_DETECTOR,)
    shards_evaluation = True
    saves_detections = True

    def __init__(self, coco_gt: Mapping[str, Any], label_to_cat: Mapping[int, int], *,
                 voc_metrics: bool = False) -> None:
        self.coco_gt = coco_gt
        self.label_to_cat = dict(label_to_cat)
        self.voc_metrics = voc_metrics
        self.last_results: list[dict[str, Any]] = []

    @classmethod
    def build(cls, cfg: Any, data: Any) -> "DetectionTask":
        """From a DataBundle made by `data.detection.build_detection_data` (reads `data.val`)."""
        val = data.val
        meta = val.meta
        # VOC's metric on VOC data, and on any data for a box-only task (paper 002 scores its detectors by VOC07 mAP)
        box_only = cls.iou_types == ("bbox",)
        return cls(val.coco_gt, meta.label_to_cat, voc_metrics=meta.source_format == "voc" or box_only)

    def example_input(self, image: torch.Tensor) -> Any:
        return [image]  # torchvision detectors take a list of images

    def onnx_input(self, example: Any) -> torch.Tensor:
        return example[0]

    batch_axis = False  # the graph is traced for one image of the example's size

    def loss(self, model: nn.Module, batch: Any, device: torch.device) -> dict[str, torch.Tensor]:
        images, targets = batch
        images = [img.to(device, non_blocking=True) for img in images]
        targets = [{k: v.to(device, non_blocking=True) for k, v in t.items()} for t in targets]
        terms = model(images, targets)
        return {"loss": sum(terms.values()), **terms}

    @torch.no_grad()
    def predict(self, model: nn.Module, loader: Iterable, device: torch.device) -> list[dict[str, Any]]:
        """COCO result records for every image in `loader` (the model is in eval mode)."""
        results: list[dict[str, Any]] = []
        for images, targets in loader:
            outputs = model([img.to(device, non_blocking=True) for img in images])
            ids = [int(t["image_id"]) for t in targets]
            results += outputs_to_results(outputs, ids, self.label_to_cat)
        return results

    def evaluate(self, model: nn.Module, loader: Iterable, device: torch.device) -> dict[str, float]:
        """COCO metrics on `loader` (the detections stay for `save_detections`)."""
        return self.evaluate_results(self.predict(model, loader, device))

    def evaluate_shard(self, model: nn.Module, loader: Iterable, device: torch.device) -> list[dict[str, Any]]:
        """One slice's COCO results (a DDP rank's): `merge_evaluations` scores them together."""
        return self.predict(model, loader, device)

    def merge_evaluations(self, shards: list[list[dict[str, Any]]]) -> dict[str, float]:
        """COCO metrics of every slice's results, concatenated in slice order (= file order)."""
        return self.evaluate_results([r for shard in shards for r in shard])

    def evaluate_results(self, results: list[dict[str, Any]]) -> dict[str, float]:
        """Metrics for ready COCO results (e.g. a saved detections file)."""
        self.last_results = results
        metrics: dict[str, float] = {}
        cat_ids = list(self.label_to_cat.values())
        for iou_type in self.iou_types:
            metrics.update(evaluate_coco(self.coco_gt, results, iou_type, cat_ids).stats)
        if self.voc_metrics:
            boxes = results_for("bbox", results)
            metrics["voc07_mAP"], _ = voc_map(self.coco_gt, boxes, cat_ids, use_07_metric=True)
            metrics["voc_mAP"], _ = voc_map(self.coco_gt, boxes, cat_ids, use_07_metric=False)
        return metrics

    def save_detections(self, path: str | Path) -> None:
        """Write the results of the last evaluation as a COCO results JSON (`ticketlab eval --save-detections`)."""
        save_results(path, self.last_results)


TASKS.register(DetectionTask.name, DetectionTask)
