"""VOC XML → COCO conversion, VOC-format bundles, and VOC mAP on a case computed by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from ticketlab.config import Config, DataConfig
from ticketlab.data.detection import build_detection_data
from ticketlab.data.voc import VOC_CLASSES, read_voc_xml, voc_to_coco
from ticketlab.errors import TicketlabError
from ticketlab.tasks import build_task, build_task_data
from ticketlab.tasks.voc_eval import voc_ap, voc_map

XML = """<annotation><folder>VOC2007</folder><filename>{stem}.jpg</filename>
<size><width>{w}</width><height>{h}</height><depth>3</depth></size>{objects}</annotation>"""
OBJ = """<object><name>{name}</name><pose>Left</pose><truncated>0</truncated><difficult>{d}</difficult>
<bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"""


def write_voc(root, images: dict, sets: dict) -> None:
    """images: stem -> (w, h, [(name, (xmin, ymin, xmax, ymax), difficult)])."""
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for stem, (w, h, objs) in images.items():
        body = "".join(OBJ.format(name=n, b=b, d=d) for n, b, d in objs)
        (root / "Annotations" / f"{stem}.xml").write_text(XML.format(stem=stem, w=w, h=h, objects=body))
        Image.fromarray(np.full((h, w, 3), 128, dtype=np.uint8)).save(root / "JPEGImages" / f"{stem}.jpg")
    for name, stems in sets.items():
        (root / "ImageSets" / "Main" / f"{name}.txt").write_text("\n".join(stems) + "\n")


IMAGES = {
    "000005": (50, 40, [("dog", (1, 1, 10, 20), 0), ("person", (20, 5, 45, 39), 1)]),
    "000007": (60, 30, [("car", (5, 5, 30, 25), 0)]),
    "000009": (50, 40, []),
}


def test_xml_reader(tmp_path):
    write_voc(tmp_path, IMAGES, {"trainval": list(IMAGES)})
    info = read_voc_xml(tmp_path / "Annotations" / "000005.xml")
    assert (info.file_name, info.width, info.height) == ("000005.jpg", 50, 40)
    assert [(o.name, o.box, o.difficult) for o in info.objects] == [
        ("dog", (1.0, 1.0, 10.0, 20.0), False), ("person", (20.0, 5.0, 45.0, 39.0), True)]


def test_voc_to_coco(tmp_path):
    write_voc(tmp_path, IMAGES, {"trainval": list(IMAGES)})
    coco = voc_to_coco(tmp_path, "trainval", tmp_path / "out.json")
    assert json.loads((tmp_path / "out.json").read_text()) == coco
    assert [c["name"] for c in coco["categories"]] == list(VOC_CLASSES) and coco["categories"][0]["id"] == 1
    assert [i["id"] for i in coco["images"]] == [5, 7, 9]
    dog, person, car = coco["annotations"]
    assert dog["bbox"] == [0.0, 0.0, 10.0, 20.0] and dog["area"] == 200.0  # inclusive pixels 1..10 → width 10
    assert dog["category_id"] == VOC_CLASSES.index("dog") + 1 and dog["iscrowd"] == 0
    assert person["difficult"] == person["iscrowd"] == person["ignore"] == 1
    assert car["image_id"] == 7


def test_voc2012_ids_and_errors(tmp_path):
    write_voc(tmp_path, {"2008_000123": (20, 20, [("cat", (2, 2, 9, 9), 0)])}, {"val": ["2008_000123"]})
    assert voc_to_coco(tmp_path, "val")["images"][0]["id"] == 2008000123
    write_voc(tmp_path, {"2008_000124": (20, 20, [("unicorn", (2, 2, 9, 9), 0)])}, {"bad": ["2008_000124"]})
    with pytest.raises(TicketlabError, match=r"2008_000124.xml: object 0: class 'unicorn' is not one of the 20"):
        voc_to_coco(tmp_path, "bad")
    with pytest.raises(TicketlabError, match=r"ImageSets/Main/nope.txt: VOC image set not found"):
        voc_to_coco(tmp_path, "nope")


def test_voc_bundle_and_task(tmp_path):
    write_voc(tmp_path, IMAGES, {"trainval": ["000005", "000009"], "test": ["000007"]})
    cfg = DataConfig(format="voc", root=str(tmp_path), train="trainval", val="test", augment=False)
    data = build_detection_data(cfg)
    assert data.num_classes == 21 and data.class_names == list(VOC_CLASSES)
    image, target = data.train[0]
    assert image.shape == (3, 40, 50)
    assert target["boxes"].tolist() == [[0.0, 0.0, 10.0, 20.0]]  # the difficult person is not a target
    task = build_task("detection", data)
    assert task.scores_voc
    gt_box = [4.0, 4.0, 26.0, 21.0]
    metrics = task.evaluate_results([{"image_id": 7, "category_id": 7, "bbox": gt_box, "score": 0.9}])
    assert metrics["voc07_mAP"] == pytest.approx(1.0) and metrics["voc_mAP"] == pytest.approx(1.0)
    assert metrics["bbox_AP50"] == pytest.approx(1.0)
    with pytest.raises(TicketlabError, match=r"task instance_segmentation reads coco; 'voc' holds boxes"):
        build_task_data(Config(task="instance_segmentation", data=cfg))


def test_voc_ap_hand_computed():
    """Class 1: GT g1 (image 1), g2 difficult (image 1), g3 (image 2) → 2 positives.
    Detections by score: hit g1 (TP), hit g2 (ignored), g1 again (FP), miss in image 2 (FP), hit g3 (TP).
    With the ignored one kept at its place: recall .5 .5 .5 .5 1, precision 1 1 .5 1/3 .5.
    11-point: recall ≥ 0…0.5 → max precision 1 (6 points), ≥ 0.6…1 → 0.5 (5 points) = 8.5/11.
    Area: 0.5 · 1 + 0.5 · 0.5 = 0.75.
    Class 2 has only a difficult object: no AP. Class 3 has one object, no detections: AP 0."""
    gt = {"annotations": [
        {"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "difficult": 0},
        {"image_id": 1, "category_id": 1, "bbox": [50, 50, 10, 10], "difficult": 1},
        {"image_id": 2, "category_id": 1, "bbox": [20, 20, 10, 10], "difficult": 0},
        {"image_id": 2, "category_id": 2, "bbox": [0, 0, 10, 10], "difficult": 1},
        {"image_id": 3, "category_id": 3, "bbox": [0, 0, 10, 10], "difficult": 0},
    ]}
    dets = [
        {"image_id": 1, "category_id": 1, "bbox": [1, 0, 10, 10], "score": 0.9},
        {"image_id": 1, "category_id": 1, "bbox": [50, 51, 10, 10], "score": 0.8},
        {"image_id": 1, "category_id": 1, "bbox": [0, 1, 10, 10], "score": 0.7},
        {"image_id": 2, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.6},
        {"image_id": 2, "category_id": 1, "bbox": [21, 21, 10, 10], "score": 0.5},
        {"image_id": 2, "category_id": 2, "bbox": [0, 0, 10, 10], "score": 0.5},
    ]
    m07, per07 = voc_map(gt, dets, [1, 2, 3], use_07_metric=True)
    assert per07 == pytest.approx({1: 8.5 / 11, 3: 0.0})
    assert m07 == pytest.approx((8.5 / 11) / 2)
    m10, per10 = voc_map(gt, dets, [1, 2, 3], use_07_metric=False)
    assert per10 == pytest.approx({1: 0.75, 3: 0.0}) and m10 == pytest.approx(0.375)


def test_voc_ap_curves():
    rec, prec = np.array([0.25, 0.5, 0.5, 1.0]), np.array([1.0, 1.0, 2 / 3, 0.8])
    # envelope: 1 up to recall .5, then .8 to recall 1
    assert voc_ap(rec, prec, use_07_metric=False) == pytest.approx(0.5 * 1 + 0.5 * 0.8)
    assert voc_ap(rec, prec, use_07_metric=True) == pytest.approx((6 * 1 + 5 * 0.8) / 11)
