"""build_detection_data: the data-root layout rule, the bundle's facts, and the synthetic set."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from test_coco_files import base_coco, write_coco_dir
from ticketlab.config import DataConfig
from ticketlab.data.coco import CocoDetection
from ticketlab.data.detection import build_detection_data, coco_image_root, collate_detection
from ticketlab.data.detection_transforms import RandomHorizontalFlip
from ticketlab.errors import TicketlabError
from ticketlab.tasks import build_task, task_class
from ticketlab.tasks.detection import DetectionTask


def _two_splits(root):
    write_coco_dir(root, name="train.json")
    val = base_coco()
    val["annotations"] = val["annotations"][:2]
    (root / "val.json").write_text(json.dumps(val))


def test_bundle_from_images_dir_layout(tmp_path):
    _two_splits(tmp_path)
    cfg = DataConfig(format="coco", root=str(tmp_path), train="train.json", val="val.json", image_size=96,
                     augment=True)  # what load_config resolves a null augment to for the R-CNN families
    data = build_detection_data(cfg, task_class("instance_segmentation").data_needs)
    assert data.num_classes == 3 and data.class_names == ["cat", "person"] and data.in_channels == 3
    assert data.image_size == 96 and len(data.train) == 2 and len(data.val) == 2
    assert isinstance(data.train.transform, RandomHorizontalFlip) and data.val.transform is None
    images, targets = data.collate_fn([data.val[0], data.val[1]])
    assert len(images) == 2 and images[0].shape == (3, 30, 40) and int(targets[1]["image_id"]) == 2
    assert targets[0]["masks"].shape[0] == 2
    task = build_task("instance_segmentation", data)
    assert isinstance(task, DetectionTask) and task.headline == "segm_AP" and task.label_to_cat == {1: 5, 2: 9}
    assert not task.scores_voc


def test_keypoint_bundle_exposes_keypoint_meta(tmp_path):
    _two_splits(tmp_path)
    cfg = DataConfig(format="coco", root=str(tmp_path), train="train.json", val="val.json", augment=False)
    data = build_detection_data(cfg, task_class("keypoints").data_needs)
    assert data.num_classes == 2 and data.train.transform is None
    assert data.train.meta.num_keypoints == 5 and data.train.meta.keypoint_flip_map == (0, 2, 1, 4, 3)
    assert build_task("keypoints", data).headline == "keypoints_AP"


def test_coco2017_layout_and_root_fallback(tmp_path):
    # root/annotations/instances_val2017.json + root/val2017/<file_name>
    coco = base_coco()
    for img in coco["images"]:
        img["file_name"] = img["file_name"].removeprefix("train/")
    write_coco_dir(tmp_path / "tmp", coco)
    (tmp_path / "annotations").mkdir()
    shutil.move(tmp_path / "tmp" / "train.json", tmp_path / "annotations" / "instances_val2017.json")
    shutil.move(tmp_path / "tmp" / "images", tmp_path / "val2017")
    ann = tmp_path / "annotations" / "instances_val2017.json"
    assert coco_image_root(tmp_path, ann) == tmp_path / "val2017"
    cfg = DataConfig(format="coco", root=str(tmp_path), train="annotations/instances_val2017.json",
                     val="annotations/instances_val2017.json")
    assert len(build_detection_data(cfg).val) == 2
    assert coco_image_root(tmp_path, tmp_path / "other.json") == tmp_path  # nothing else: root itself


@pytest.mark.parametrize("field,value,pattern", [
    ("root", None, r"data.root: a detection dataset needs"),
    ("root", "/nonexistent/x", r"data.root: directory /nonexistent/x not found"),
    ("val", None, r"data.val: a detection dataset needs its annotation file"),
    ("val", "missing.json", r"missing.json: annotation file not found"),
    ("format", "digits", r"data.format: 'digits' does not provide boxes"),
])
def test_config_errors(tmp_path, field, value, pattern):
    _two_splits(tmp_path)
    cfg = DataConfig(format="coco", root=str(tmp_path), train="train.json", val="val.json")
    setattr(cfg, field, value)
    with pytest.raises(TicketlabError, match=pattern):
        build_detection_data(cfg)


def test_splits_must_share_categories(tmp_path):
    _two_splits(tmp_path)
    val = json.loads((tmp_path / "val.json").read_text())
    val["categories"].append({"id": 11, "name": "extra"})
    (tmp_path / "val.json").write_text(json.dumps(val))
    cfg = DataConfig(format="coco", root=str(tmp_path), train="train.json", val="val.json")
    with pytest.raises(TicketlabError, match=r"data.val: val.json has categories \[5, 9, 11\]"):
        build_detection_data(cfg)


def test_collate_keeps_lists():
    a, b = (torch.zeros(3, 2, 2), {"x": 1}), (torch.ones(3, 4, 4), {"x": 2})
    images, targets = collate_detection([a, b])
    assert images[1].shape == (3, 4, 4) and targets == ({"x": 1}, {"x": 2})


def test_synthetic_set_loads_for_every_task(tmp_path):
    synth = pytest.importorskip("ticketlab.data.synth")
    synth.generate_synthetic(tmp_path, synth.SynthConfig(image_size=48, n_train=4, n_val=2, seed=1))
    cfg = DataConfig(format="coco", root=str(tmp_path), train="train.json", val="val.json")
    for task in ("detection", "instance_segmentation", "keypoints"):
        data = build_detection_data(cfg, task_class(task).data_needs)
        assert not data.train.index.skipped and not data.val.index.skipped
        image, target = data.train[0]
        assert image.shape == (3, 48, 48) and target["boxes"].shape[1] == 4
        if task == "keypoints":
            assert data.num_classes == 2 and target["keypoints"].shape[1:] == (17, 3)
        else:
            assert data.num_classes == 9
    assert isinstance(data.val, CocoDetection)
