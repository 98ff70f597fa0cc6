"""PASCAL VOC 2007/2012 detection annotations (XML) read into COCO form.

Everything downstream (dataset, training, COCO metrics) speaks COCO, so VOC is converted once, by
`voc_to_coco`, and VOC-specific evaluation (VOC07 mAP with `difficult` ignored) lives in
`tasks/voc_eval.py`.

Layout (`voc_root` is e.g. VOCdevkit/VOC2007):
  Annotations/<id>.xml   JPEGImages/<id>.jpg   ImageSets/Main/<image_set>.txt (one id a line)
A split may join image sets of several years (`voc_split_to_coco`): with `root` the VOCdevkit
directory, `VOC2007/trainval+VOC2012/trainval` is paper 001's "07+12" training set; a bare
`trainval` is that image set of `root` itself (root = VOCdevkit/VOC2007).

Conversion rules:
- categories: the 20 VOC classes in the standard order, COCO ids 1..20;
- boxes: VOC's 1-based inclusive pixel corners (xmin..xmax) become COCO's continuous
  [xmin - 1, ymin - 1, xmax - xmin + 1, ymax - ymin + 1] (Detectron2's convention, so IoUs equal
  the official VOC devkit's "+1" IoUs);
- image ids: the digits of the file id ("2008_000123" → 2008000123, "000005" → 5), stable across
  image sets; if any id is not of that form, ids are 1..N in image-set order;
- `difficult` objects are kept with "difficult": 1, "ignore": 1 and "iscrowd": 1. COCO tools
  (pycocotools and faster-coco-eval alike) honour only `iscrowd`, so marking them crowd is the one
  way to make COCO metrics not count them as misses nor penalise detections on them; like crowd
  regions they are not training targets (py-faster-rcnn's default `use_diff=False`). VOC07 mAP
  reads the `difficult` flag and applies the devkit's exact rule.
"""

from __future__ import annotations

import json
import math
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ticketlab.atomic import atomic_write_text
from ticketlab.data.detection_image import DEFAULT_MAX_PIXELS, read_size
from ticketlab.data.detection_validate import BOX_TOLERANCE_PX, resolve_image_path
from ticketlab.errors import TicketlabError

VOC_CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor",
)
_NUMERIC_ID = re.compile(r"^\d+(_\d+)?$")
_SAFE_ID = re.compile(r"^(?!\.\.?$)[\w.-]+$")  # a file stem, never '..' nor a path


@dataclass(frozen=True)
class VocObject:
    name: str
    box: tuple[float, float, float, float]  # xmin, ymin, xmax, ymax as written (1-based, inclusive)
    difficult: bool


@dataclass(frozen=True)
class VocImage:
    file_name: str
    width: int
    height: int
    objects: tuple[VocObject, ...]


def read_voc_xml(path: Path, image_dir: Path | None = None, max_pixels: int = DEFAULT_MAX_PIXELS) -> VocImage:
    """Parse one VOC annotation file. `image_dir` is read for the size when the XML lacks it."""
    try:
        root = ET.parse(path).getroot()
    except FileNotFoundError:
        raise TicketlabError(f"{path}: annotation file not found") from None
    except ET.ParseError as e:
        raise TicketlabError(f"{path}: not valid XML ({e})") from None
    except OSError as e:
        raise TicketlabError(f"{path}: annotation file not readable ({e.__class__.__name__})") from None
    file_name = (root.findtext("filename") or "").strip() or f"{path.stem}.jpg"
    width, height = _int(root.findtext("size/width")), _int(root.findtext("size/height"))
    if width <= 0 or height <= 0:
        if image_dir is None:
            raise TicketlabError(f"{path}: <size> lacks a positive width/height and no image directory was given")
        try:
            width, height = read_size(resolve_image_path(image_dir, file_name, f"{path}: <filename>"), max_pixels)
        except TicketlabError as e:
            raise TicketlabError(f"{path}: <size> lacks a positive width/height and the image gives none: {e}") from None
    objects = []
    for i, obj in enumerate(root.findall("object")):
        where = f"{path}: object {i}"
        name = (obj.findtext("name") or "").strip()
        if name not in VOC_CLASSES:
            raise TicketlabError(f"{where}: class {name!r} is not one of the 20 VOC classes")
        coords = [obj.findtext(f"bndbox/{k}") for k in ("xmin", "ymin", "xmax", "ymax")]
        try:
            box = tuple(float(c) for c in coords)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise TicketlabError(f"{where}: <bndbox> needs numeric xmin, ymin, xmax, ymax, got {coords}") from None
        _check_box(where, box, width, height)
        difficult = _int(obj.findtext("difficult")) == 1
        objects.append(VocObject(name=name, box=box, difficult=difficult))  # type: ignore[arg-type]
    return VocImage(file_name=file_name, width=width, height=height, objects=tuple(objects))


def _check_box(where: str, box: tuple[float, ...], width: int, height: int) -> None:
    """Corners are 1-based and inclusive: 1 <= xmin <= xmax <= width (same tolerance as COCO boxes)."""
    x1, y1, x2, y2 = box
    tol = BOX_TOLERANCE_PX
    if not all(math.isfinite(v) for v in box) or x2 < x1 or y2 < y1:
        raise TicketlabError(f"{where}: <bndbox> {box} needs finite xmin <= xmax and ymin <= ymax")
    if x1 < 1 - tol or y1 < 1 - tol or x2 > width + tol or y2 > height + tol:
        raise TicketlabError(f"{where}: <bndbox> {box} lies outside the {width}×{height} image by more than {tol:g} px")


def _int(text: str | None) -> int:
    try:
        return int(float(text)) if text is not None and text.strip() else 0
    except (ValueError, OverflowError):  # 'abc', 'nan', 'inf'
        return 0


def read_image_set(voc_root: Path, image_set: str) -> list[str]:
    path = Path(voc_root) / "ImageSets" / "Main" / f"{image_set}.txt"
    if not path.is_file():
        raise TicketlabError(f"{path}: VOC image set not found (expected one image id per line)")
    try:
        ids = [line.split()[0] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except UnicodeDecodeError:
        raise TicketlabError(f"{path}: not a VOC image set (not UTF-8 text)") from None
    for stem in ids:
        if not _SAFE_ID.match(stem):
            raise TicketlabError(f"{path}: image id {stem!r} must be a plain file name (letters, digits, '_', '-', '.')")
    return ids


def voc_to_coco(voc_root: str | Path, image_set: str, out_json: str | Path | None = None,
                max_pixels: int = DEFAULT_MAX_PIXELS) -> dict[str, Any]:
    """Convert a VOC image set to a COCO annotation dict (written atomically to `out_json` if given)."""
    voc_root = Path(voc_root)
    ids = read_image_set(voc_root, image_set)
    numeric = all(_NUMERIC_ID.match(i) for i in ids)
    images, annotations = [], []
    for n, stem in enumerate(ids, start=1):
        info = read_voc_xml(voc_root / "Annotations" / f"{stem}.xml", voc_root / "JPEGImages", max_pixels)
        image_id = int(stem.replace("_", "")) if numeric else n
        images.append({"id": image_id, "file_name": info.file_name, "width": info.width,
                       "height": info.height, "voc_id": stem})
        for obj in info.objects:
            x1, y1, x2, y2 = obj.box
            w, h = x2 - x1 + 1, y2 - y1 + 1
            d = int(obj.difficult)
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id,
                "category_id": VOC_CLASSES.index(obj.name) + 1,
                "bbox": [x1 - 1, y1 - 1, w, h], "area": w * h,
                "iscrowd": d, "ignore": d, "difficult": d,
            })
    if len({img["id"] for img in images}) != len(images):
        raise TicketlabError(f"{voc_root}/ImageSets/Main/{image_set}.txt: an image id is listed twice")
    coco = {
        "info": {"description": f"VOC {voc_root.name} {image_set}, converted by ticketlab"},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i + 1, "name": n, "supercategory": "voc"} for i, n in enumerate(VOC_CLASSES)],
    }
    if out_json is not None:
        atomic_write_text(Path(out_json), json.dumps(coco))
    return coco


def voc_split_to_coco(root: str | Path, split: str,
                      max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[dict[str, Any], Path]:
    """A split `[YEAR_DIR/]image_set[+…]` under `root` as one COCO dict, and the directory its
    `file_name`s are relative to (`root/JPEGImages` for one part, else `root`). Image ids stay the
    digits of the file ids, so VOC2007's 000005 and VOC2012's 2008_000005 never collide; ids repeated
    across parts are an error."""
    root = Path(root)
    parts = [p.strip() for p in split.split("+")]
    if not all(parts):
        raise TicketlabError(f"data split {split!r}: expected image sets joined by '+', e.g. "
                             "VOC2007/trainval+VOC2012/trainval")
    if len(parts) == 1 and "/" not in parts[0]:
        return voc_to_coco(root, parts[0], max_pixels=max_pixels), root / "JPEGImages"
    merged: dict[str, Any] = {"images": [], "annotations": [], "categories": []}
    seen: dict[int, str] = {}
    for part in parts:
        year, _, image_set = part.rpartition("/")
        if year and not all(_SAFE_ID.match(piece) for piece in year.split("/")):
            raise TicketlabError(f"data split {split!r}: {year!r} must be a directory under {root}")
        year_root = root / year if year else root
        coco = voc_to_coco(year_root, image_set, max_pixels=max_pixels)
        prefix = f"{year}/JPEGImages/" if year else "JPEGImages/"
        for img in coco["images"]:
            if img["id"] in seen:
                raise TicketlabError(f"data split {split!r}: image id {img['id']} is in both {seen[img['id']]} "
                                     f"and {part}")
            seen[img["id"]] = part
            merged["images"].append({**img, "file_name": prefix + img["file_name"]})
        for ann in coco["annotations"]:
            merged["annotations"].append({**ann, "id": len(merged["annotations"]) + 1})
        merged["categories"] = coco["categories"]
    merged["info"] = {"description": f"VOC {split} under {root.name}, converted by ticketlab"}
    return merged, root
