"""The R-CNN tasks: detection (Faster), instance_segmentation (Mask), keypoints (Keypoint R-CNN).

One class for the three, since they differ only in which COCO iou types are scored:
  detection → bbox;  instance_segmentation → bbox + segm;  keypoints → bbox + keypoints,
with the headline `bbox_AP`, `segm_AP` or `keypoints_AP`. The loss is torchvision's own loss dict
(the model computes it in train mode), summed into 'loss'. Data converted from VOC XML, and every
box-only detection run (paper 002 scores its detectors on VOC07 test), also get VOC's metric:
`voc07_mAP` (11-point, VOC2007 test protocol) and `voc_mAP` (area, VOC2010+).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import torch
from torch import nn

from ticketlab.tasks.coco_eval import evaluate_coco, outputs_to_results, results_for, save_results
from ticketlab.tasks.voc_eval import voc_map

IOU_TYPES = {"detection": ("bbox",), "instance_segmentation": ("bbox", "segm"), "keypoints": ("bbox", "keypoints")}
HEADLINES = {"detection": "bbox_AP", "instance_segmentation": "segm_AP", "keypoints": "keypoints_AP"}


class DetectionTask:
    higher_is_better = True

    def __init__(self, kind: str, coco_gt: Mapping[str, Any], label_to_cat: Mapping[int, int], *,
                 class_names: Sequence[str] | None = None, voc_metrics: bool = False) -> None:
        if kind not in IOU_TYPES:
            raise ValueError(f"unknown detection task {kind!r}")
        self.name = kind
        self.headline = HEADLINES[kind]
        self.iou_types = IOU_TYPES[kind]
        self.coco_gt = coco_gt
        self.label_to_cat = dict(label_to_cat)
        self.voc_metrics = voc_metrics
        names = list(class_names) if class_names is not None else [str(c) for c in self.label_to_cat.values()]
        self.cat_names = dict(zip(self.label_to_cat.values(), names))
        self.last_results: list[dict[str, Any]] = []
        self.last_per_category: dict[str, dict[str, float]] = {}  # metric family -> class name -> AP

    @classmethod
    def from_data(cls, kind: str, data: Any) -> "DetectionTask":
        """Build from a DataBundle made by `data.detection.build_detection_data` (reads `data.val`)."""
        val = data.val
        meta = val.meta
        return cls(kind, val.coco_gt, meta.label_to_cat, class_names=meta.class_names,
                   voc_metrics=meta.source_format == "voc" or kind == "detection")

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

    def evaluate(self, model: nn.Module, loader: Iterable, device: torch.device, *,
                 save_detections: str | Path | None = None) -> dict[str, float]:
        """COCO metrics on `loader`; with `save_detections`, also write the COCO results JSON there."""
        metrics = self.evaluate_results(self.predict(model, loader, device))
        if save_detections is not None:
            self.save_detections(save_detections)
        return metrics

    def evaluate_shard(self, model: nn.Module, loader: Iterable, device: torch.device) -> list[dict[str, Any]]:
        """One slice's COCO results (a DDP rank's): `merge_evaluations` scores them together."""
        return self.predict(model, loader, device)

    def merge_evaluations(self, shards: list[list[dict[str, Any]]]) -> dict[str, float]:
        """COCO metrics of every slice's results, concatenated in slice order (= file order)."""
        return self.evaluate_results([r for shard in shards for r in shard])

    def evaluate_results(self, results: list[dict[str, Any]]) -> dict[str, float]:
        """Metrics for ready COCO results (e.g. a saved detections file)."""
        self.last_results = results
        self.last_per_category = {}
        metrics: dict[str, float] = {}
        cat_ids = list(self.label_to_cat.values())
        for iou_type in self.iou_types:
            scores = evaluate_coco(self.coco_gt, results, iou_type, cat_ids)
            metrics.update(scores.stats)
            self.last_per_category[iou_type] = {self.cat_names[c]: ap for c, ap in scores.per_category.items()}
        if self.voc_metrics:
            boxes = results_for("bbox", results)
            metrics["voc07_mAP"], per07 = voc_map(self.coco_gt, boxes, cat_ids, use_07_metric=True)
            metrics["voc_mAP"], _ = voc_map(self.coco_gt, boxes, cat_ids, use_07_metric=False)
            self.last_per_category["voc07"] = {self.cat_names[c]: ap for c, ap in per07.items()}
        return metrics

    def save_detections(self, path: str | Path) -> None:
        """Write the results of the last evaluation as a COCO results JSON (`ticketlab eval --save-detections`)."""
        save_results(path, self.last_results)
