"""Write the synthetic scenes as a COCO-format dataset, plus a summary of what it holds.

Layout: `out_dir/train.json`, `out_dir/val.json`, `out_dir/images/{train,val}/NNNNNN.png` and
`out_dir/summary.json`; each image's `file_name` ("train/000000.png") is relative to
`out_dir/images/`, the image root that `ticketlab.data.detection` looks for first.
Segmentations are compressed RLE (`{"size": [h, w], "counts": str}`, read them with
`COCO.annToMask`), boxes are the tight box of the visible mask, `area` its pixel count, `iscrowd` 0.
Images are written plainly (they are regenerable); the json files, written atomically after them,
are the commit point.
Every image draws from its own generator seeded by (seed, split, index), so the same config writes
byte-identical files whatever else changes, and any image can be regenerated alone.
The same scenes are also written as VOC-style semantic masks (see `semantic.py`).
"""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from ticketlab.atomic import atomic_write_json, atomic_write_text
from ticketlab.data.synth.config import PERSON, SIZE_RANGES, SynthConfig
from ticketlab.data.synth.scene import SceneObject, make_scene, size_range
from ticketlab.data.synth.semantic import semantic_mask, write_image_set, write_mask
from ticketlab.data.synth.shapes import KEYPOINT_NAMES, SKELETON

SPLITS = ("train", "val")
RARE_SHARE = 0.2  # a class is "rare" when it has at most this share of the most frequent class's instances


def categories(cfg: SynthConfig) -> list[dict]:
    """COCO categories, ids 1..N in `cfg.classes` order; the person carries keypoint names + skeleton."""
    cats = []
    for i, name in enumerate(cfg.classes, start=1):
        cat: dict = {"id": i, "name": name, "supercategory": "person" if name == PERSON else "shape"}
        if name == PERSON and cfg.keypoints:
            cat["keypoints"] = list(KEYPOINT_NAMES)
            cat["skeleton"] = [list(p) for p in SKELETON]
        cats.append(cat)
    return cats


def _annotation(obj: SceneObject, ann_id: int, image_id: int, cat_id: int) -> dict:
    ys, xs = np.nonzero(obj.mask)
    x0, y0 = int(xs.min()), int(ys.min())
    rle = mask_utils.encode(np.asfortranarray(obj.mask.astype(np.uint8)))
    ann = {
        "id": ann_id, "image_id": image_id, "category_id": cat_id,
        "bbox": [x0, y0, int(xs.max()) + 1 - x0, int(ys.max()) + 1 - y0],
        "area": int(obj.mask.sum()),
        "segmentation": {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")},
        "iscrowd": 0,
    }
    if obj.keypoints is not None:
        ann["keypoints"] = obj.keypoints
        ann["num_keypoints"] = sum(1 for v in obj.keypoints[2::3] if v > 0)
    return ann


def _png(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _split_summary(coco: dict, cfg: SynthConfig) -> dict:
    names = {c["id"]: c["name"] for c in coco["categories"]}
    per_class = {n: 0 for n in cfg.classes}
    per_size = {s: 0 for s in SIZE_RANGES}
    per_class_size = {n: {s: 0 for s in SIZE_RANGES} for n in cfg.classes}
    kp_vis = {"visible": 0, "occluded": 0, "unlabelled": 0}
    for a in coco["annotations"]:
        n, s = names[a["category_id"]], size_range(a["area"])
        per_class[n] += 1
        per_size[s] += 1
        per_class_size[n][s] += 1
        for v in a.get("keypoints", [])[2::3]:
            kp_vis[("unlabelled", "occluded", "visible")[v]] += 1
    out = {"images": len(coco["images"]), "annotations": len(coco["annotations"]),
           "per_class": per_class, "per_size": per_size, "per_class_size": per_class_size}
    if cfg.keypoints:
        out["keypoints"] = kp_vis
    return out


def _write_split(out: Path, split: str, n: int, cfg: SynthConfig, split_id: int) -> dict:
    cat_ids = {name: i for i, name in enumerate(cfg.classes, start=1)}
    images, anns = [], []
    extra = {"occluded": 0, "truncated": 0}
    for idx in range(n):
        rng = np.random.default_rng([cfg.seed, split_id, idx])
        image, objects = make_scene(cfg, rng)
        file_name = f"{split}/{idx:06d}.png"
        path = out / "images" / file_name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(_png(image))
        write_mask(out, file_name.removesuffix(".png"), semantic_mask(objects, cfg.classes, cfg.image_size))
        image_id = idx + 1
        images.append({"id": image_id, "file_name": file_name, "width": cfg.image_size,
                       "height": cfg.image_size})
        for obj in objects:
            anns.append(_annotation(obj, len(anns) + 1, image_id, cat_ids[obj.cls]))
            extra["occluded"] += obj.occluded
            extra["truncated"] += obj.truncated
    coco = {
        "info": {"description": "ticketlab synthetic scenes", "split": split,
                 "config": dataclasses.asdict(cfg)},
        "images": images, "annotations": anns, "categories": categories(cfg),
    }
    atomic_write_text(out / f"{split}.json", json.dumps(coco))
    write_image_set(out, split, [f"{split}/{i:06d}" for i in range(n)], cfg.classes)
    return {**_split_summary(coco, cfg), **extra}


def generate_synthetic(out_dir: str | Path, cfg: SynthConfig | None = None) -> dict:
    """Write the synthetic COCO-format dataset under `out_dir`; returns paths and a summary.

    The summary holds, per split, image/annotation counts, instances per class and per COCO size
    range (small < 32², medium < 96², large), occluded/truncated counts and keypoint visibility;
    `rare_classes` lists the classes with at most RARE_SHARE of the most frequent class's training
    instances.
    """
    cfg = cfg or SynthConfig()
    cfg.validate()
    out = Path(out_dir)
    summary = {split: _write_split(out, split, n, cfg, i)
               for i, (split, n) in enumerate(zip(SPLITS, (cfg.n_train, cfg.n_val)))}
    counts = summary["train"]["per_class"]
    top = max(counts.values())
    summary["rare_classes"] = [c for c, k in counts.items() if k <= RARE_SHARE * top]
    atomic_write_json(out / "summary.json", summary)
    return {
        "out_dir": str(out),
        "train": str(out / "train.json"),
        "val": str(out / "val.json"),
        "images": str(out / "images"),
        "class_names": list(cfg.classes),
        "num_keypoints": len(KEYPOINT_NAMES) if cfg.keypoints else 0,
        "summary": summary,
    }
