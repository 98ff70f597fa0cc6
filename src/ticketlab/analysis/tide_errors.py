"""Detection and segmentation errors with TIDE (Bolya et al., ECCV 2020), as 001 App. C compares
them for the dense model and its tickets (Fig. 7–8).

TIDE sorts every false positive and missed object into one main error — Cls (right place, wrong
class), Loc (right class, IoU between the background and foreground thresholds), Both, Dupe
(a duplicate of a detection already matched), Bkg (background) and Miss (ground truth never
detected) — and reports how much AP@0.5 would rise if that error alone were fixed (dAP, in AP
points 0–100). Ground truth and detections are handed to `tidecv` in memory (its `Data`), with the
same categories, crowd handling and 100 detections per image as COCO's evaluation. Creating a
`TIDE` restyles matplotlib globally (seaborn's theme); that is undone at once.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import matplotlib
from tidecv import TIDE, Data
from tidecv.functions import toRLE

from ticketlab.tasks.coco_eval import results_for

TIDE_ERRORS = ("Cls", "Loc", "Both", "Dupe", "Bkg", "Miss")
TIDE_MODES = {"bbox": TIDE.BOX, "segm": TIDE.MASK}


def tide_ground_truth(gt: Mapping[str, Any], cat_ids: Sequence[int], iou_type: str) -> Data:
    """The COCO ground truth of `cat_ids` as tidecv `Data` (crowd annotations as ignore regions)."""
    data = Data("ground truth", max_dets=100)
    sizes = {}
    for image in gt["images"]:
        data.add_image(image["id"], str(image.get("file_name", image["id"])))
        sizes[image["id"]] = (image["width"], image["height"])
    wanted = set(cat_ids)
    for cat in gt["categories"]:
        if cat["id"] in wanted:
            data.add_class(cat["id"], cat["name"])
    for ann in gt["annotations"]:
        if ann["category_id"] not in wanted:
            continue
        mask = None
        if iou_type == "segm" and ann.get("segmentation"):
            mask = toRLE(ann["segmentation"], *sizes[ann["image_id"]])
        add = data.add_ignore_region if ann.get("iscrowd", 0) else data.add_ground_truth
        add(ann["image_id"], ann["category_id"], ann["bbox"], mask)
    return data


def tide_detections(results: Sequence[Mapping[str, Any]], cat_ids: Sequence[int], iou_type: str,
                    name: str) -> Data:
    data = Data(name)
    wanted = set(cat_ids)
    key = "bbox" if iou_type == "bbox" else "segmentation"
    for r in results_for(iou_type, results):
        if r["category_id"] in wanted:
            box = r[key] if iou_type == "bbox" else None
            mask = r[key] if iou_type == "segm" else None
            data.add_detection(r["image_id"], r["category_id"], r["score"], box, mask)
    return data


def tide_errors(gt: Mapping[str, Any], runs: Mapping[str, Sequence[Mapping[str, Any]]], iou_type: str,
                cat_ids: Sequence[int]) -> dict[str, dict[str, Optional[float]]]:
    """For each named set of detections: TIDE's AP50 ("AP50") and the dAP of each main error (None for
    a set without detections: AP50 is 0 and no error is defined; None too where fixing an error type
    leaves tidecv no class to average over)."""
    if iou_type not in TIDE_MODES:
        raise ValueError(f"TIDE scores bbox or segm, not {iou_type!r}")
    truth = tide_ground_truth(gt, cat_ids, iou_type)
    found: dict[str, dict[str, Optional[float]]] = {}
    for name, results in runs.items():
        found[name] = {"AP50": 0.0, **{e: None for e in TIDE_ERRORS}}
        dets = tide_detections(results, cat_ids, iou_type, name)
        if not dets.annotations:  # tidecv divides by zero on an empty set; it has no errors to sort anyway
            continue
        with matplotlib.rc_context():  # TIDE() restyles matplotlib globally (seaborn); keep that out of our figures
            tide = TIDE(mode=TIDE_MODES[iou_type])
        found[name]["AP50"] = float(tide.evaluate(truth, dets, name=name).ap)
        try:
            errors = tide.get_main_errors()[name]
        except ZeroDivisionError:  # fixing one error type left no class with detections or ground truth
            continue
        found[name].update({e: float(errors[e]) for e in TIDE_ERRORS})
    return found
