"""A COCO-format detection dataset yielding torchvision detection targets.

Each item is `(image, target)`: the image a float tensor 3×H×W in [0, 1]; the target the dict
torchvision's Faster/Mask/Keypoint R-CNN expect in training:
  boxes     float32 N×4, xyxy in pixels, clipped to the image
  labels    int64 N, contiguous 1..K (0 is background); `meta.cat_ids[label - 1]` is the COCO id
  image_id  int64 scalar, the COCO image id (evaluation maps predictions back with it)
  area      float32 N (COCO's `area`), iscrowd int64 N (always 0: crowd regions are not targets)
  masks     uint8 N×H×W            (when instance masks are needed)
  keypoints float32 N×K×3 (x, y, v)  (when keypoints are needed)
Images without annotations are kept (evaluation needs them; torchvision trains on empty targets).

The annotation file is checked up front (`detection_validate.index_coco`); crowd regions and the
counted skips are left out of the targets but stay in `coco_gt`, the ground truth for evaluation.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
from torch.utils.data import Dataset

from ticketlab.data.detection_image import DEFAULT_MAX_PIXELS, load_rgb
from ticketlab.data.detection_masks import segmentation_to_mask
from ticketlab.data.detection_transforms import Transform, keypoint_flip_map
from ticketlab.data.bundle import BOXES, INSTANCE_MASKS, KEYPOINT_COORDS
from ticketlab.data.detection_validate import CocoIndex, index_coco, resolve_image_path
from ticketlab.errors import TicketlabError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DetectionMeta:
    """Facts about the label space that model builders and evaluators need."""

    needs: frozenset  # the annotations loaded as targets (data.bundle kinds)
    class_names: tuple[str, ...]  # label k (1-based) -> class_names[k - 1]
    cat_ids: tuple[int, ...]  # label k (1-based) -> COCO category id cat_ids[k - 1]
    keypoint_names: tuple[str, ...] = ()
    keypoint_flip_map: tuple[int, ...] = ()
    source_format: str = "coco"  # "voc" when converted from VOC XML (adds VOC mAP to the metrics)

    @property
    def num_classes(self) -> int:
        """Including the background class 0."""
        return len(self.cat_ids) + 1

    @property
    def num_keypoints(self) -> int:
        return len(self.keypoint_names)

    @property
    def label_to_cat(self) -> dict[int, int]:
        return {k + 1: c for k, c in enumerate(self.cat_ids)}


class CocoDetection(Dataset):
    """Images listed in a COCO json, with the targets in `needs`: boxes, plus instance masks and/or
    keypoints (data.bundle's BOXES, INSTANCE_MASKS, KEYPOINT_COORDS)."""

    def __init__(self, ann_file: str | Path, image_root: str | Path, needs: frozenset = frozenset({BOXES}),
                 transform: Optional[Transform] = None, *, data: dict[str, Any] | None = None,
                 check_files: bool = True, source_format: str = "coco",
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        self.index: CocoIndex = index_coco(Path(ann_file), Path(image_root), needs, check_files=check_files,
                                           data=data)
        self.transform, self.max_pixels = transform, max_pixels
        idx = self.index
        self.meta = DetectionMeta(needs=frozenset(needs), class_names=tuple(idx.class_names), cat_ids=tuple(idx.cat_ids),
                                  keypoint_names=tuple(idx.keypoint_names),
                                  keypoint_flip_map=tuple(keypoint_flip_map(idx.keypoint_names)),
                                  source_format=source_format)
        self._label_of = {c: k + 1 for k, c in enumerate(idx.cat_ids)}
        summary = idx.skip_summary()
        if summary:
            log.warning(summary)

    @property
    def coco_gt(self) -> dict[str, Any]:
        """The annotation file's content (crowd regions kept): the ground truth for COCOeval."""
        return self.index.gt

    def __len__(self) -> int:
        return len(self.index.images)

    def image_path(self, i: int) -> Path:
        img = self.index.images[i]
        return resolve_image_path(self.index.image_root, img["file_name"], f"{self.index.path}: image id {img['id']}")

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        info = self.index.images[i]
        image = load_rgb(self.image_path(i), self.max_pixels)
        h, w = image.shape[-2:]
        if (w, h) != (info["width"], info["height"]):
            raise TicketlabError(f"{self.index.path}: image id {info['id']}: {self.image_path(i)} is {w}×{h} but "
                                 f"the annotation file says {info['width']}×{info['height']}")
        target = self.target(i)
        if self.transform is not None:
            image, target = self.transform(image, target)
        return image, target

    def target(self, i: int) -> dict[str, torch.Tensor]:
        """The torchvision target of image `i`, before any transform."""
        info = self.index.images[i]
        anns = self.index.targets[info["id"]]
        h, w = info["height"], info["width"]
        boxes = torch.tensor([a["bbox"] for a in anns], dtype=torch.float64).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, w)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, h)
        target = {
            "boxes": boxes.float(),
            "labels": torch.tensor([self._label_of[a["category_id"]] for a in anns], dtype=torch.int64),
            "image_id": torch.tensor(info["id"], dtype=torch.int64),
            "area": torch.tensor([float(a["area"]) for a in anns], dtype=torch.float32),
            "iscrowd": torch.zeros(len(anns), dtype=torch.int64),
        }
        if INSTANCE_MASKS in self.meta.needs:
            masks = [torch.from_numpy(segmentation_to_mask(a["segmentation"], h, w)) for a in anns]
            target["masks"] = torch.stack(masks) if masks else torch.zeros((0, h, w), dtype=torch.uint8)
        if KEYPOINT_COORDS in self.meta.needs:
            k = self.meta.num_keypoints
            kps = torch.tensor([a["keypoints"] for a in anns], dtype=torch.float32).reshape(-1, k, 3)
            target["keypoints"] = kps
        return target
