"""Check a COCO annotation file up front and index it for training and evaluation.

A broken annotation found at iteration 40,000 costs a day; found at start-up it costs a minute. So
everything is checked when the dataset is built, and each problem is ONE line naming the file, the
image or annotation id, the field and what was expected (a `TicketlabError`).

Two kinds of finding:
- errors (the file is wrong, training on it would be silently wrong): malformed fields, unknown
  image/category ids, duplicate or zero ids, negative box sizes, a box outside its image by more
  than `BOX_TOLERANCE_PX` (polygon points likewise), keypoint lists that do not match the
  category's keypoint names, RLEs whose size or runs do not cover the image exactly, `file_name`s
  that escape the image root, missing image files;
- counted skips (things COCO itself contains and its own tools tolerate): boxes of zero width or
  height after clipping to the image, polygons of fewer than 3 points when masks are needed. They
  are left out of the *training targets* only, counted by reason, and reported once
  (`CocoIndex.skip_summary`).

The evaluation ground truth (`CocoIndex.gt`) is the file's own content, crowd regions and skipped
annotations included, so our numbers equal pycocotools' on the same file. The only change: a
missing `area` (needed by COCOeval's area ranges) is filled from the mask or box, and a missing
`num_keypoints` from the visibility flags; both are counted under `filled`.

Crowd annotations (`iscrowd: 1`) are never training targets (as in torchvision's and Detectron's
COCO loaders) but stay in the ground truth, where COCOeval ignores detections that fall on them.
When keypoints are needed, only categories with keypoint names become labels; annotations of the other
categories are not targets either (counted in `num_other_category`, not reported as skips).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ticketlab.data.bundle import BOXES, INSTANCE_MASKS, KEYPOINT_COORDS
from ticketlab.data.detection_masks import rle_string_runs, segmentation_area
from ticketlab.errors import TicketlabError

BOX_TOLERANCE_PX = 2.0  # boxes may overhang their image by this much (rounding in the tools that drew them)
COCO_NEEDS = frozenset({BOXES, INSTANCE_MASKS, KEYPOINT_COORDS})  # what a COCO file can provide


@dataclass
class CocoIndex:
    path: Path
    image_root: Path
    needs: frozenset  # the annotations loaded as targets (data.bundle kinds; always BOXES)
    gt: dict[str, Any]  # the annotation file as loaded (crowd kept), area / num_keypoints filled
    images: list[dict[str, Any]]  # in file order
    targets: dict[int, list[dict[str, Any]]]  # image id -> annotations used as training targets
    cat_ids: list[int]  # contiguous label k (1-based) -> COCO category id cat_ids[k - 1]
    class_names: list[str]
    keypoint_names: list[str]  # empty unless keypoints are needed
    skipped: Counter = field(default_factory=Counter)  # reason -> count of annotations left out of targets
    skipped_examples: dict[str, list[int]] = field(default_factory=dict)  # reason -> first annotation ids
    filled: Counter = field(default_factory=Counter)  # field -> count of annotations where it was filled in
    num_crowd: int = 0  # crowd regions: ground truth for evaluation, never targets
    num_other_category: int = 0  # keypoints needed: annotations of categories without keypoint names

    def skip_summary(self) -> str:
        """One line describing what was left out of the training targets ('' when nothing was)."""
        if not self.skipped:
            return ""
        parts = []
        for reason, n in sorted(self.skipped.items()):
            ids = ", ".join(str(i) for i in self.skipped_examples.get(reason, []))
            parts.append(f"{n} {reason} (annotation ids {ids}{', …' if n > 3 else ''})")
        return f"{self.path}: left out of the training targets: " + "; ".join(parts)


def resolve_image_path(image_root: Path, file_name: Any, where: str) -> Path:
    """`image_root / file_name`, refusing names that are absolute or climb out of the root."""
    if not isinstance(file_name, str) or not file_name.strip() or not file_name.isprintable():
        raise TicketlabError(f"{where}: 'file_name' must be a non-empty string without control characters, "
                             f"got {file_name!r}")
    rel = Path(file_name)
    if rel.is_absolute() or ".." in rel.parts or ".." in file_name.replace("\\", "/").split("/"):
        raise TicketlabError(f"{where}: 'file_name' {file_name!r} must be a path inside the image root "
                             f"{image_root} (no absolute paths, no '..')")
    return image_root / rel


def load_json(path: Path) -> Any:
    if not path.is_file():
        raise TicketlabError(f"{path}: annotation file not found")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise TicketlabError(f"{path}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    except UnicodeDecodeError:
        raise TicketlabError(f"{path}: not valid JSON (not UTF-8 text)") from None
    except RecursionError:
        raise TicketlabError(f"{path}: not valid COCO JSON (nested too deeply)") from None


def index_coco(path: Path, image_root: Path, needs: frozenset = frozenset({BOXES}), *, check_files: bool = True,
               data: dict[str, Any] | None = None) -> CocoIndex:
    """Validate COCO annotations (read from `path`, or given as `data`) and index them.

    `path` is still used in messages when `data` is given (e.g. a VOC set converted in memory).
    """
    if BOXES not in needs or not needs <= COCO_NEEDS:
        raise ValueError(f"COCO annotations provide {sorted(COCO_NEEDS)}, boxes always; asked for {sorted(needs)}")
    path = Path(path)
    image_root = Path(image_root)
    gt = load_json(path) if data is None else data
    if not isinstance(gt, dict):
        raise TicketlabError(f"{path}: expected a JSON object with 'images', 'annotations' and 'categories'")
    for key in ("images", "annotations", "categories"):
        if not isinstance(gt.get(key), list):
            raise TicketlabError(f"{path}: expected a list under '{key}'")

    cats = _check_categories(path, gt["categories"])
    used = _used_categories(path, cats, needs)
    keypoint_names = list(cats[used[0]].get("keypoints") or []) if KEYPOINT_COORDS in needs else []
    images = _check_images(path, gt["images"], image_root, check_files)
    index = CocoIndex(path=path, image_root=image_root, needs=frozenset(needs), gt=gt, images=gt["images"],
                      targets={img["id"]: [] for img in gt["images"]}, cat_ids=used,
                      class_names=[str(cats[c]["name"]) for c in used], keypoint_names=keypoint_names)
    used_set = set(used)
    seen: set[int] = set()
    for ann in gt["annotations"]:
        _check_annotation(index, ann, images, cats, used_set, seen)
    return index


def _int_id(value: Any) -> bool:
    """An integer (not a bool) that fits int64, the type torch and the evaluators keep ids in."""
    return isinstance(value, int) and not isinstance(value, bool) and -2**63 <= value < 2**63


def _check_categories(path: Path, categories: list) -> dict[int, dict]:
    cats: dict[int, dict] = {}
    for i, cat in enumerate(categories):
        if not isinstance(cat, dict) or not _int_id(cat.get("id")):
            raise TicketlabError(f"{path}: categories[{i}]: expected an object with an integer 'id'")
        cid = cat["id"]
        if cid in cats:
            raise TicketlabError(f"{path}: category id {cid}: appears twice in 'categories'")
        if not isinstance(cat.get("name"), str):
            raise TicketlabError(f"{path}: category id {cid}: expected a string 'name'")
        kps = cat.get("keypoints")
        if kps is not None and (not isinstance(kps, list) or not all(isinstance(k, str) for k in kps)):
            raise TicketlabError(f"{path}: category id {cid}: 'keypoints' must be a list of keypoint names")
        cats[cid] = cat
    if not cats:
        raise TicketlabError(f"{path}: 'categories' is empty; expected at least one category")
    return cats


def _used_categories(path: Path, cats: dict[int, dict], needs: frozenset) -> list[int]:
    """Category ids that become labels 1..K: all of them, or those with keypoint names for keypoints."""
    if KEYPOINT_COORDS not in needs:
        return sorted(cats)
    with_kps = sorted(c for c, cat in cats.items() if cat.get("keypoints"))
    if not with_kps:
        raise TicketlabError(f"{path}: keypoint targets need a category with a 'keypoints' list of names; none has one")
    names = cats[with_kps[0]]["keypoints"]
    for c in with_kps[1:]:
        if cats[c]["keypoints"] != names:
            raise TicketlabError(f"{path}: category id {c}: keypoint names differ from category id {with_kps[0]}'s; "
                                 "one keypoint model needs one list of keypoints")
    return with_kps


def _check_images(path: Path, images: list, image_root: Path, check_files: bool) -> dict[int, dict]:
    by_id: dict[int, dict] = {}
    for i, img in enumerate(images):
        if not isinstance(img, dict) or not _int_id(img.get("id")):
            raise TicketlabError(f"{path}: images[{i}]: expected an object with an integer 'id'")
        iid = img["id"]
        where = f"{path}: image id {iid}"
        if iid in by_id:
            raise TicketlabError(f"{where}: appears twice in 'images'")
        for key in ("width", "height"):
            if not _int_id(img.get(key)) or img[key] <= 0:
                raise TicketlabError(f"{where}: '{key}' must be a positive integer, got {img.get(key)!r}")
        if img["width"] * img["height"] >= 2**32:
            raise TicketlabError(f"{where}: 'width' × 'height' = {img['width']}×{img['height']} is more pixels than "
                                 "the COCO mask API addresses (2^32)")
        file = resolve_image_path(image_root, img.get("file_name"), where)
        if check_files and not file.is_file():
            raise TicketlabError(f"{where}: image file {file} not found")
        by_id[iid] = img
    return by_id


def _skip(index: CocoIndex, reason: str, ann_id: int) -> None:
    index.skipped[reason] += 1
    examples = index.skipped_examples.setdefault(reason, [])
    if len(examples) < 3:
        examples.append(ann_id)


def _check_annotation(index: CocoIndex, ann: Any, images: dict[int, dict], cats: dict[int, dict],
                      used: set[int], seen: set[int]) -> None:
    path = index.path
    if not isinstance(ann, dict) or not _int_id(ann.get("id")):
        raise TicketlabError(f"{path}: annotation {str(ann)[:60]}: expected an object with an integer 'id'")
    aid = ann["id"]
    where = f"{path}: annotation id {aid}"
    if aid == 0:
        raise TicketlabError(f"{where}: id 0 is not allowed (COCOeval uses 0 to mean 'unmatched'); "
                             "number annotations from 1")
    if aid in seen:
        raise TicketlabError(f"{where}: appears twice in 'annotations'")
    seen.add(aid)
    image_id, cat_id = ann.get("image_id"), ann.get("category_id")
    img = images.get(image_id) if _int_id(image_id) else None  # type: ignore[arg-type]
    if img is None:
        raise TicketlabError(f"{where}: 'image_id' {image_id!r} is not an image id of this file")
    cat = cats.get(cat_id) if _int_id(cat_id) else None  # type: ignore[arg-type]
    if cat is None:
        raise TicketlabError(f"{where}: 'category_id' {cat_id!r} is not one of the categories {sorted(cats)}")
    crowd = ann.get("iscrowd", 0)
    if crowd not in (0, 1):
        raise TicketlabError(f"{where}: 'iscrowd' must be 0 or 1, got {crowd!r}")
    if "area" in ann and (not _finite([ann["area"]]) or ann["area"] < 0):
        raise TicketlabError(f"{where}: 'area' must be a non-negative number, got {ann['area']!r}")
    x1, y1, x2, y2 = _check_box(where, ann.get("bbox"), img)
    has_mask = _check_segmentation(where, ann.get("segmentation"), img)
    kps = _check_keypoints(where, ann, cat, KEYPOINT_COORDS in index.needs and cat["id"] in used)
    _fill_eval_fields(index, ann, img, has_mask, kps)

    if crowd:
        index.num_crowd += 1
        return
    if cat["id"] not in used:
        index.num_other_category += 1
        return
    if x2 - x1 <= 0 or y2 - y1 <= 0:
        _skip(index, "degenerate box (zero width or height inside the image)", aid)
        return
    if INSTANCE_MASKS in index.needs and not _usable_polygons_or_rle(ann.get("segmentation")):
        _skip(index, "no usable segmentation (missing, or polygons under 3 points)", aid)
        return
    index.targets[img["id"]].append(ann)


def _finite(values: Any, n: int | None = None) -> bool:
    return (isinstance(values, list) and (n is None or len(values) == n)
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values))


def _check_box(where: str, bbox: Any, img: dict) -> tuple[float, float, float, float]:
    """Validate [x, y, w, h]; return it as xyxy clipped to the image."""
    if not _finite(bbox, 4):
        raise TicketlabError(f"{where}: 'bbox' must be [x, y, width, height] (4 finite numbers), got {bbox!r}")
    x, y, w, h = bbox
    if w < 0 or h < 0:
        raise TicketlabError(f"{where}: 'bbox' {bbox} has a negative width or height")
    W, H, tol = img["width"], img["height"], BOX_TOLERANCE_PX
    if x < -tol or y < -tol or x + w > W + tol or y + h > H + tol:
        raise TicketlabError(f"{where}: 'bbox' {bbox} lies outside image id {img['id']} ({W}×{H}) by more "
                             f"than {tol:g} px")
    return max(0.0, x), max(0.0, y), min(float(W), x + w), min(float(H), y + h)


def _check_segmentation(where: str, seg: Any, img: dict) -> bool:
    """Validate polygons or RLE if present; True when there is one."""
    if seg is None or seg == []:
        return False
    if isinstance(seg, list):
        W, H, tol = img["width"], img["height"], BOX_TOLERANCE_PX
        for i, poly in enumerate(seg):
            if not _finite(poly) or len(poly) % 2:
                raise TicketlabError(f"{where}: 'segmentation'[{i}] must be a flat list of x, y numbers "
                                     "(an even count)")
            xs, ys = poly[0::2] or [0], poly[1::2] or [0]
            if min(xs) < -tol or min(ys) < -tol or max(xs) > W + tol or max(ys) > H + tol:
                raise TicketlabError(f"{where}: 'segmentation'[{i}] has points outside image id {img['id']} "
                                     f"({W}×{H}) by more than {tol:g} px")
        return True
    if isinstance(seg, dict):
        _check_rle(where, seg, img)
        return True
    raise TicketlabError(f"{where}: 'segmentation' must be a list of polygons or an RLE object")


def _check_rle(where: str, seg: dict, img: dict) -> None:
    """An RLE's runs must cover its image exactly: the mask API decodes anything else to garbage."""
    h, w = img["height"], img["width"]
    size, counts = seg.get("size"), seg.get("counts")
    if not (isinstance(size, list) and all(_int_id(v) for v in size) and size == [h, w]):
        raise TicketlabError(f"{where}: RLE 'size' {size!r} must be [height, width] of image id {img['id']} "
                             f"= [{h}, {w}]")
    if isinstance(counts, str):
        try:
            runs = rle_string_runs(counts)
        except ValueError as e:
            raise TicketlabError(f"{where}: RLE 'counts' is not a compressed COCO RLE string ({e})") from None
    elif isinstance(counts, list) and all(_int_id(c) and 0 <= c < 2**32 for c in counts):
        runs = counts
    else:
        raise TicketlabError(f"{where}: RLE 'counts' must be a compressed string or a list of non-negative "
                             "integer run lengths")
    if sum(runs) != h * w:
        raise TicketlabError(f"{where}: RLE 'counts' runs add up to {sum(runs)} pixels; image id {img['id']} "
                             f"has {h}×{w} = {h * w}")


def _usable_polygons_or_rle(seg: Any) -> bool:
    if isinstance(seg, dict):
        return True
    return isinstance(seg, list) and any(len(p) >= 6 for p in seg)


def _check_keypoints(where: str, ann: dict, cat: dict, required: bool) -> list | None:
    names = cat.get("keypoints") or []
    kps = ann.get("keypoints")
    if kps is None:
        if required and not ann.get("iscrowd", 0):
            raise TicketlabError(f"{where}: category id {cat['id']} has {len(names)} keypoint names but the "
                                 "annotation has no 'keypoints'")
        return None
    if not names:
        return None  # keypoints on a category without names: nothing to check them against, not used
    if not _finite(kps) or len(kps) != 3 * len(names):
        n = len(kps) if isinstance(kps, list) else type(kps).__name__
        raise TicketlabError(f"{where}: 'keypoints' has {n} numbers; category id {cat['id']} names "
                             f"{len(names)} keypoints, so expected {3 * len(names)} (x, y, visibility each)")
    if any(v not in (0, 1, 2) for v in kps[2::3]):
        raise TicketlabError(f"{where}: keypoint visibility flags must be 0, 1 or 2, got {kps[2::3]}")
    return kps


def _fill_eval_fields(index: CocoIndex, ann: dict, img: dict, has_mask: bool, kps: list | None) -> None:
    if "area" not in ann:
        if has_mask:
            ann["area"] = segmentation_area(ann["segmentation"], img["height"], img["width"])
        else:
            ann["area"] = float(ann["bbox"][2] * ann["bbox"][3])
        index.filled["area"] += 1
    if kps is not None and "num_keypoints" not in ann:
        ann["num_keypoints"] = sum(1 for v in kps[2::3] if v > 0)
        index.filled["num_keypoints"] += 1
