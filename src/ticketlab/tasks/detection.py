"""Object detection (Faster R-CNN), and the base of the other COCO tasks.

`instance_segmentation` (tasks/instance_segmentation.py) and `keypoints` (tasks/keypoints.py)
differ from it only in which COCO iou types are scored and which annotations they train on:
  detection → bbox;  instance_segmentation → bbox + segm;  keypoints → bbox + keypoints,
with the headline `bbox_AP`, `segm_AP` or `keypoints_AP`. The loss is torchvision's own loss dict
(the model computes it in train mode), summed into 'loss'; evaluation also reports the same terms on
the validation images (`val_loss`, `val_loss_*`; `tasks/rcnn_val_loss.py`).

The data's format picks the class, and so what is headlined and drawn: on VOC-format data `build`
returns a class of `tasks/voc_detection.py` (headline VOC07 mAP by default, `data.voc_ap`); elsewhere
this one, headlined and drawn by COCO's metrics. Box-only detection also scores VOC's `voc07_mAP`
(11-point) and `voc_mAP` (area) on any data (`scores_voc`; paper 002 scores its detectors by VOC07
mAP), recorded in metrics.json beside the COCO numbers; the mask and keypoint tasks do not.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Iterable, Mapping

import torch
from torch import nn

from ticketlab.data.bundle import BOXES
from ticketlab.models.spec import BOX_DETECTOR
from ticketlab.registry import TASKS
from ticketlab.tasks.base import Task
from ticketlab.tasks.coco_eval import evaluate_coco, outputs_to_results, results_for, save_results
from ticketlab.tasks.rcnn_val_loss import rcnn_loss_terms
from ticketlab.tasks.voc_eval import voc_map


class DetectionTask(Task):
    name = "detection"
    iou_types = ("bbox",)
    metrics = ("bbox_AP",)
    headline = "bbox_AP"
    scores_voc: ClassVar[bool] = True  # box-only: VOC's mAPs are computed too (the subclasses set False)
    higher_is_better = True
    data_needs = frozenset({BOXES})
    model_kinds = (BOX_DETECTOR,)
    shards_evaluation = True
    saves_detections = True

    def __init__(self, coco_gt: Mapping[str, Any], label_to_cat: Mapping[int, int]) -> None:
        self.coco_gt = coco_gt
        self.label_to_cat = dict(label_to_cat)
        self.last_results: list[dict[str, Any]] = []

    @classmethod
    def build(cls, cfg: Any, data: Any) -> "DetectionTask":
        """From a DataBundle made by `data.detection.build_detection_data` (reads `data.val`)."""
        val = data.val
        meta = val.meta
        if meta.source_format == "voc":  # judged with VOC's own metric (data.voc_ap)
            from ticketlab.tasks.voc_detection import voc_task

            return voc_task(cfg.data.voc_ap)(val.coco_gt, meta.label_to_cat)
        return cls(val.coco_gt, meta.label_to_cat)

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
        return self._predict(model, loader, device, with_loss=False)["results"]

    def _predict(self, model: nn.Module, loader: Iterable, device: torch.device, *, with_loss: bool) -> dict:
        """Results, and with `with_loss` the validation loss terms summed over images
        (`tasks/rcnn_val_loss.py`: train-mode losses with norms and dropout left untouched)."""
        results: list[dict[str, Any]] = []
        loss_sums: dict[str, float] = {}
        count = 0
        plain = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
        with torch.no_grad():
            for images, targets in loader:
                images = [img.to(device, non_blocking=True) for img in images]
                outputs = model(images)
                ids = [int(t["image_id"]) for t in targets]
                results += outputs_to_results(outputs, ids, self.label_to_cat)
                if with_loss:
                    moved = [{k: v.to(device, non_blocking=True) for k, v in t.items()} for t in targets]
                    for k, v in rcnn_loss_terms(plain, images, moved).items():
                        loss_sums[k] = loss_sums.get(k, 0.0) + v * len(images)
                    count += len(images)
        return {"results": results, "loss_sums": loss_sums, "count": count}

    def evaluate(self, model: nn.Module, loader: Iterable, device: torch.device) -> dict[str, float]:
        """COCO (and VOC) metrics and the validation loss on `loader` (the detections stay for
        `save_detections`)."""
        return self.merge_evaluations([self.evaluate_shard(model, loader, device)])

    def evaluate_shard(self, model: nn.Module, loader: Iterable, device: torch.device) -> dict:
        """One slice's COCO results and loss sums (a DDP rank's): `merge_evaluations` scores them."""
        return self._predict(model, loader, device, with_loss=True)

    def merge_evaluations(self, shards: list[dict]) -> dict[str, float]:
        """Metrics of every slice's results, concatenated in slice order (= file order), and the
        validation loss terms averaged over all images (`val_loss`, `val_loss_classifier`, …)."""
        metrics = self.evaluate_results([r for shard in shards for r in shard["results"]])
        count = sum(shard["count"] for shard in shards)
        if count:
            for key in shards[0]["loss_sums"]:
                name = "val_loss" if key == "loss" else f"val_{key}"
                metrics[name] = sum(shard["loss_sums"][key] for shard in shards) / count
        return metrics

    def evaluate_results(self, results: list[dict[str, Any]]) -> dict[str, float]:
        """Metrics for ready COCO results (e.g. a saved detections file)."""
        self.last_results = results
        metrics: dict[str, float] = {}
        cat_ids = list(self.label_to_cat.values())
        for iou_type in self.iou_types:
            metrics.update(evaluate_coco(self.coco_gt, results, iou_type, cat_ids).stats)
        if self.scores_voc:
            boxes = results_for("bbox", results)
            metrics["voc07_mAP"], _ = voc_map(self.coco_gt, boxes, cat_ids, use_07_metric=True)
            metrics["voc_mAP"], _ = voc_map(self.coco_gt, boxes, cat_ids, use_07_metric=False)
        return metrics

    def save_detections(self, path: str | Path) -> None:
        """Write the results of the last evaluation as a COCO results JSON (`ticketlab eval --save-detections`)."""
        save_results(path, self.last_results)


TASKS.register(DetectionTask.name, DetectionTask)
