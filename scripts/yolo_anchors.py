"""YOLOv4 anchors for a COCO-format training set: `model.yolo.anchors` as k-means clusters of its boxes.

    python scripts/yolo_anchors.py data/synth/train.json --input-size 128

Each box is scaled as YOLOv4's input transform scales its image (longer side to `--input-size`),
then `models/yolo_anchors.dimension_clusters` (YOLOv2's k-means, 1 − IoU distance) gives 9 shapes,
smallest first: 3 per stride 8, 16, 32. Prints the YAML value and how well it fits (mean best IoU).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from ticketlab.models.yolo_anchors import dimension_clusters, shape_iou


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("annotations", help="COCO json of the training split")
    parser.add_argument("--input-size", type=int, required=True, help="model.yolo.input_size (or data.image_size)")
    args = parser.parse_args()
    coco = json.loads(Path(args.annotations).read_text())
    scale = {im["id"]: args.input_size / max(im["width"], im["height"]) for im in coco["images"]}
    wh = torch.tensor([[a["bbox"][2] * scale[a["image_id"]], a["bbox"][3] * scale[a["image_id"]]]
                       for a in coco["annotations"] if not a.get("iscrowd") and min(a["bbox"][2:]) > 0])
    anchors = dimension_clusters(wh)
    fit = shape_iou(wh, anchors).max(dim=1).values.mean()
    print("anchors: [" + ", ".join(f"[{w:.0f}, {h:.0f}]" for w, h in anchors.tolist()) + "]")
    print(f"# {len(wh)} boxes, mean best shape IoU {fit:.3f}")


if __name__ == "__main__":
    main()
