"""Write a COCO-format detection split in PASCAL VOC's layout (the inverse of `voc.voc_to_coco`).

Paper 001 trains and scores its Faster R-CNN on VOC, with VOC's own metric. To run that path at CPU
scale, the synthetic scenes are written as a VOC year directory:
  Annotations/<id>.xml   JPEGImages/<id>.<ext>   ImageSets/Main/<split>.txt
Each COCO category is renamed to a VOC class through `class_map` (the reader accepts only the 20
VOC names). Boxes go back to VOC's 1-based inclusive corners, xmin = x + 1 and xmax = x + w, so
reading the directory back gives the COCO boxes unchanged; crowd objects become `difficult`.
Image files are copied as they are (the reader takes any image format named in <filename>).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Mapping
from xml.sax.saxutils import escape

from ticketlab.atomic import atomic_write_text
from ticketlab.data.detection_validate import load_json
from ticketlab.data.voc import VOC_CLASSES
from ticketlab.errors import TicketlabError


def _object_xml(name: str, bbox: list[float], difficult: bool) -> str:
    x, y, w, h = bbox
    corners = (x + 1, y + 1, x + w, y + h)
    coords = "".join(f"<{k}>{v:g}</{k}>" for k, v in zip(("xmin", "ymin", "xmax", "ymax"), corners))
    return (f"<object><name>{escape(name)}</name><truncated>0</truncated><difficult>{int(difficult)}</difficult>"
            f"<bndbox>{coords}</bndbox></object>")


def coco_to_voc(coco: Mapping[str, Any], image_root: str | Path, voc_root: str | Path, split: str,
                class_map: Mapping[str, str]) -> list[str]:
    """Write the images and boxes of `coco` (file names relative to `image_root`) under `voc_root`
    as image set `split`; ids are the COCO image ids, zero-padded to 6 digits. Returns the ids."""
    voc_root = Path(voc_root)
    cat_names = {c["id"]: c["name"] for c in coco["categories"]}
    for name in cat_names.values():
        if class_map.get(name) not in VOC_CLASSES:
            raise TicketlabError(f"class_map: category {name!r} needs one of the 20 VOC class names, "
                                 f"got {class_map.get(name)!r}")
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (voc_root / sub).mkdir(parents=True, exist_ok=True)
    by_image: dict[int, list[dict]] = {}
    for ann in coco["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    ids = []
    for img in coco["images"]:
        stem = f"{int(img['id']):06d}"
        source = Path(image_root) / img["file_name"]
        file_name = stem + source.suffix
        shutil.copyfile(source, voc_root / "JPEGImages" / file_name)
        objects = "".join(_object_xml(class_map[cat_names[a["category_id"]]], a["bbox"], bool(a.get("iscrowd", 0)))
                          for a in by_image.get(img["id"], []))
        atomic_write_text(voc_root / "Annotations" / f"{stem}.xml",
                          f"<annotation><filename>{file_name}</filename><size><width>{img['width']}</width>"
                          f"<height>{img['height']}</height><depth>3</depth></size>{objects}</annotation>\n")
        ids.append(stem)
    atomic_write_text(voc_root / "ImageSets" / "Main" / f"{split}.txt", "".join(f"{i}\n" for i in ids))
    return ids


def synth_class_map(names: list[str]) -> dict[str, str]:
    """The synthetic classes as VOC classes: 'person' stays person, the shapes take the other VOC
    names in order (aeroplane, bicycle, …)."""
    others = iter(c for c in VOC_CLASSES if c != "person")
    return {n: ("person" if n == "person" else next(others)) for n in names}


def synth_to_voc(synth_dir: str | Path, voc_root: str | Path) -> dict[str, list[str]]:
    """The synthetic scenes of `synth_dir` (`ticketlab data synth`) as a VOC2007-like directory:
    train.json → image set `trainval`, val.json → `test` (ids continued after the training ones, as
    VOC's ids are unique across sets), classes renamed by `synth_class_map`."""
    synth_dir = Path(synth_dir)
    written: dict[str, list[str]] = {}
    offset = 0
    for source, split in (("train.json", "trainval"), ("val.json", "test")):
        coco = load_json(synth_dir / source)
        shift = offset
        coco = {**coco, "images": [{**i, "id": i["id"] + shift} for i in coco["images"]],
                "annotations": [{**a, "image_id": a["image_id"] + shift} for a in coco["annotations"]]}
        offset = max((i["id"] for i in coco["images"]), default=offset)
        names = [c["name"] for c in coco["categories"]]
        written[split] = coco_to_voc(coco, synth_dir / "images", voc_root, split, synth_class_map(names))
    return written
