"""CocoDetection: targets in torchvision's format, checked against pycocotools' own COCO reader,
and every validation rule (errors and counted skips) on small files written here."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from test_coco_files import KP_NAMES, base_coco, write_coco_dir, write_png
from ticketlab.data.coco import CocoDetection
from ticketlab.data.detection_image import load_rgb
from ticketlab.errors import TicketlabError
from ticketlab.tasks import task_class

PYCOCO_NUMPY2 = "ignore:__array__ implementation:DeprecationWarning"  # pycocotools 2.0.11 under NumPy 2
pytestmark = pytest.mark.filterwarnings(PYCOCO_NUMPY2)


def _dataset(tmp_path, task="instance_segmentation", coco=None):
    path = write_coco_dir(tmp_path, coco)
    return CocoDetection(path, tmp_path / "images", task_class(task).data_needs), path


def test_targets_match_pycocotools(tmp_path):
    ds, path = _dataset(tmp_path)
    ref = COCO(str(path))
    assert len(ds) == 2 and ds.meta.num_classes == 3 and ds.meta.cat_ids == (5, 9)
    assert ds.meta.class_names == ("cat", "person")
    image, target = ds[0]
    png = np.asarray(Image.open(tmp_path / "images" / "train" / "a.png"), dtype=np.float32) / 255
    assert image.shape == (3, 30, 40) and image.dtype == torch.float32
    torch.testing.assert_close(image, torch.from_numpy(png).permute(2, 0, 1))
    kept = [a for a in ref.loadAnns(ref.getAnnIds(imgIds=[1])) if not a["iscrowd"]]  # crowd id 3 left out
    assert [a["id"] for a in kept] == [1, 2, 4, 5]
    want_boxes = [[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in kept)]
    torch.testing.assert_close(target["boxes"], torch.tensor(want_boxes))
    assert target["labels"].tolist() == [{5: 1, 9: 2}[a["category_id"]] for a in kept]
    assert int(target["image_id"]) == 1 and target["iscrowd"].tolist() == [0, 0, 0, 0]
    assert target["area"].tolist() == [a["area"] for a in kept]
    assert target["masks"].dtype == torch.uint8 and target["masks"].shape == (4, 30, 40)
    for mask, ann in zip(target["masks"], kept):
        assert (mask.numpy() == ref.annToMask(ann)).all()
    assert any(a["iscrowd"] for a in ds.coco_gt["annotations"])  # kept for evaluation


def test_image_without_annotations_is_kept(tmp_path):
    ds, _ = _dataset(tmp_path)
    _, target = ds[1]
    assert target["boxes"].shape == (0, 4) and target["labels"].shape == (0,)
    assert target["masks"].shape == (0, 30, 40) and int(target["image_id"]) == 2


def test_keypoint_targets(tmp_path):
    ds, _ = _dataset(tmp_path, task="keypoints")
    assert ds.meta.cat_ids == (9,) and ds.meta.num_classes == 2 and ds.meta.keypoint_names == tuple(KP_NAMES)
    assert ds.meta.keypoint_flip_map == (0, 2, 1, 4, 3)
    assert ds.index.num_other_category == 2 and not ds.index.skipped  # the two non-crowd cats: not targets
    _, target = ds[0]
    coco = base_coco()
    want = [a["keypoints"] for a in coco["annotations"] if a["category_id"] == 9]
    torch.testing.assert_close(target["keypoints"], torch.tensor(want, dtype=torch.float32).reshape(2, 5, 3))
    assert target["labels"].tolist() == [1, 1] and "masks" not in target
    _, empty = ds[1]
    assert empty["keypoints"].shape == (0, 5, 3)


def test_detection_task_has_no_masks(tmp_path):
    ds, _ = _dataset(tmp_path, task="detection")
    _, target = ds[0]
    assert set(target) == {"boxes", "labels", "image_id", "area", "iscrowd"}


def _mutated(mutate):
    coco = base_coco()
    mutate(coco)
    return coco


def _ann(coco, aid):
    return next(a for a in coco["annotations"] if a["id"] == aid)


ERRORS = {
    "box outside": (lambda c: _ann(c, 1).update(bbox=[35.0, 3.0, 10.0, 8.0]), r"annotation id 1: 'bbox'.*outside"),
    "negative width": (lambda c: _ann(c, 1).update(bbox=[2.0, 3.0, -4.0, 8.0]), r"annotation id 1: .*negative"),
    "unknown category": (lambda c: _ann(c, 4).update(category_id=77), r"annotation id 4: 'category_id' 77"),
    "keypoint count": (lambda c: _ann(c, 2).update(keypoints=[1, 2, 2] * 4),
                       r"annotation id 2: 'keypoints' has 12 numbers.*expected 15"),
    "visibility": (lambda c: _ann(c, 2).update(keypoints=[1, 2, 3] * 5), r"annotation id 2: keypoint visibility"),
    "escaping file_name": (lambda c: c["images"][0].update(file_name="../../etc/passwd"),
                           r"image id 1: 'file_name' '../../etc/passwd'"),
    "absolute file_name": (lambda c: c["images"][0].update(file_name="/tmp/x.png"), r"image id 1: 'file_name'"),
    "zero annotation id": (lambda c: _ann(c, 1).update(id=0), r"annotation id 0: id 0 is not allowed"),
    "duplicate annotation id": (lambda c: _ann(c, 2).update(id=1), r"annotation id 1: appears twice"),
    "unknown image id": (lambda c: _ann(c, 1).update(image_id=99), r"annotation id 1: 'image_id' 99"),
    "rle size": (lambda c: _ann(c, 4)["segmentation"].update(size=[40, 30]), r"annotation id 4: RLE 'size'"),
    "odd polygon": (lambda c: _ann(c, 1).update(segmentation=[[1, 2, 3]]), r"annotation id 1: 'segmentation'\[0\]"),
    "bbox shape": (lambda c: _ann(c, 1).update(bbox=[1, 2, 3]), r"annotation id 1: 'bbox' must be"),
    "image width": (lambda c: c["images"][1].pop("width"), r"image id 2: 'width'"),
    "no categories": (lambda c: c.update(categories=[]), r"'categories' is empty"),
}


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_validation_errors_name_file_and_id(tmp_path, case):
    mutate, pattern = ERRORS[case]
    path = write_coco_dir(tmp_path, base_coco())  # images written from the valid file
    path.write_text(json.dumps(_mutated(mutate)))
    with pytest.raises(TicketlabError, match=pattern) as err:
        CocoDetection(path, tmp_path / "images", task_class("keypoints" if "keypoint" in case or "visib" in case
                                                            else "instance_segmentation").data_needs)
    message = str(err.value)
    assert "\n" not in message and str(path) in message


def test_missing_keypoints_in_keypoint_task(tmp_path):
    coco = _mutated(lambda c: _ann(c, 5).pop("keypoints"))
    with pytest.raises(TicketlabError, match=r"annotation id 5: category id 9 has 5 keypoint names"):
        _dataset(tmp_path, task="keypoints", coco=coco)


def test_missing_image_file(tmp_path):
    path = write_coco_dir(tmp_path)
    (tmp_path / "images" / "train" / "b.png").unlink()
    with pytest.raises(TicketlabError, match=r"train.json: image id 2: image file .*b.png not found"):
        CocoDetection(path, tmp_path / "images")


def test_unreadable_image_and_wrong_size(tmp_path):
    path = write_coco_dir(tmp_path)
    (tmp_path / "images" / "train" / "b.png").write_bytes(b"not a png")
    write_png(tmp_path / "images" / "train" / "a.png", 0, size=(41, 30))
    ds = CocoDetection(path, tmp_path / "images")
    with pytest.raises(TicketlabError, match=r"image id 1: .*a.png is 41×30 but the annotation file says 40×30"):
        ds[0]
    with pytest.raises(TicketlabError, match=r"b.png: not a readable image"):
        ds[1]


def test_bad_json(tmp_path):
    path = tmp_path / "train.json"
    path.write_text('{"images": [1,')
    with pytest.raises(TicketlabError, match=r"train.json: not valid JSON \(line 1"):
        CocoDetection(path, tmp_path)
    with pytest.raises(TicketlabError, match=r"annotation file not found"):
        CocoDetection(tmp_path / "nope.json", tmp_path)


def test_counted_skips_and_tolerance(tmp_path, caplog):
    def mutate(c):
        _ann(c, 1).update(bbox=[2.0, 3.0, 0.0, 8.0])  # zero width: COCO tolerates it, we skip it
        _ann(c, 4).update(bbox=[39.5, 5.0, 1.5, 10.0])  # overhangs by 1 px: within tolerance, clipped...
        _ann(c, 5).update(bbox=[39.0, 18.0, 2.0, 10.0])  # ...and this one kept, clipped to 1 px wide
        _ann(c, 2).pop("area")  # filled in for evaluation from the polygon
    coco = _mutated(mutate)
    with caplog.at_level(logging.WARNING, logger="ticketlab.data.coco"):
        ds, _ = _dataset(tmp_path, task="detection", coco=coco)
    assert ds.index.skipped == {"degenerate box (zero width or height inside the image)": 1}
    warnings = [r for r in caplog.records if "left out of the training targets" in r.message]
    assert len(warnings) == 1 and "annotation ids 1" in warnings[0].message
    _, target = ds[0]
    torch.testing.assert_close(target["boxes"], torch.tensor([[14.0, 2.0, 22.0, 22.0], [39.5, 5.0, 40.0, 15.0],
                                                              [39.0, 18.0, 40.0, 28.0]]))
    ref = COCO()
    ref.dataset = base_coco()
    ref.createIndex()
    rasterised = float(mask_utils.area(ref.annToRLE(ref.anns[2])))  # pycocotools' own polygon area
    assert _ann(ds.coco_gt, 2)["area"] == rasterised and ds.index.filled["area"] == 1
    assert _ann(ds.coco_gt, 1)["bbox"] == [2.0, 3.0, 0.0, 8.0]  # GT for evaluation untouched


def test_degenerate_polygon_skipped_for_masks(tmp_path):
    coco = _mutated(lambda c: _ann(c, 1).update(segmentation=[[2, 3, 12, 3]]))
    ds, _ = _dataset(tmp_path, coco=coco)
    assert sum(ds.index.skipped.values()) == 1
    _, target = ds[0]
    assert target["masks"].shape[0] == 3


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "I;16", "1"])
def test_image_modes_become_rgb_in_unit_range(tmp_path, mode):
    rng = np.random.default_rng(0)
    path = tmp_path / "x.png"
    if mode == "I;16":
        values = rng.integers(0, 65536, (6, 5), dtype=np.uint16)
        Image.fromarray(values).save(path)
        want = np.repeat(values[None].astype(np.float32) / 65535, 3, axis=0)
    else:
        rgba = rng.integers(0, 256, (6, 5, 4), dtype=np.uint8)
        img = Image.fromarray(rgba, "RGBA")
        img = img if mode == "RGBA" else img.convert("RGB").convert(mode)
        img.save(path)
        want = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32).transpose(2, 0, 1) / 255
        if mode == "RGBA":
            np.testing.assert_allclose(want, rgba[..., :3].transpose(2, 0, 1) / 255, atol=1e-6)  # alpha dropped
    got = load_rgb(path)
    assert got.shape == (3, 6, 5) and got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), want, atol=1e-6)
    assert 0 <= float(got.min()) and float(got.max()) <= 1
