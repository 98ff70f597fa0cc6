"""The synthetic COCO-format scenes: loadable, self-consistent, deterministic, long-tailed."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from ticketlab.config import from_dict
from ticketlab.data.synth import KEYPOINT_NAMES, SIZE_RANGES, SKELETON, SynthConfig, generate_synthetic, size_range
from ticketlab.errors import TicketlabError
from ticketlab.tasks import task_class

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools")

SMALL = SynthConfig(seed=3, n_train=60, n_val=16)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    return out, generate_synthetic(out, SMALL)


def _anns(path):
    return json.loads(path.read_text())


def test_layout_and_pycocotools_loads_both_splits(synth):
    out, result = synth
    for split, n in (("train", SMALL.n_train), ("val", SMALL.n_val)):
        coco = COCO(str(out / f"{split}.json"))
        assert len(coco.getImgIds()) == n
        assert len(coco.getAnnIds()) == result["summary"][split]["annotations"] > 0
        for img in coco.loadImgs(coco.getImgIds()):
            assert (out / "images" / img["file_name"]).is_file()
    assert result["class_names"] == SMALL.classes
    assert result["num_keypoints"] == 17


def test_person_category_has_coco_keypoints_and_skeleton(synth):
    out, _ = synth
    cats = {c["name"]: c for c in _anns(out / "train.json")["categories"]}
    person = cats["person"]
    assert person["keypoints"] == list(KEYPOINT_NAMES)
    names = person["keypoints"]
    for n in names:
        if n.startswith("left_"):
            assert "right_" + n[5:] in names
    assert all(1 <= a <= len(names) and 1 <= b <= len(names) for a, b in person["skeleton"])
    assert len(person["skeleton"]) == len(SKELETON)
    assert "keypoints" not in cats["disc"]
    assert [c["id"] for c in cats.values()] == list(range(1, len(SMALL.classes) + 1))


def test_annotations_are_consistent(synth):
    out, _ = synth
    coco = COCO(str(out / "train.json"))
    n_occluded_kp = 0
    for img_id in coco.getImgIds():
        seen = np.zeros((SMALL.image_size, SMALL.image_size), dtype=np.int32)
        for a in coco.loadAnns(coco.getAnnIds(imgIds=[img_id])):
            m = coco.annToMask(a).astype(bool)
            assert a["iscrowd"] == 0
            assert a["area"] == m.sum() > 0
            x, y, w, h = a["bbox"]
            assert a["area"] <= w * h
            ys, xs = np.nonzero(m)
            assert [x, y, w, h] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
            assert list(mask_utils.toBbox(a["segmentation"])) == [x, y, w, h]
            seen += m  # visible parts of different objects never overlap
            if "keypoints" in a:
                kps = np.asarray(a["keypoints"], dtype=float).reshape(-1, 3)
                assert len(kps) == 17 and a["num_keypoints"] == int((kps[:, 2] > 0).sum())
                for kx, ky, v in kps:
                    if v == 0:
                        assert kx == ky == 0
                        continue
                    assert x <= kx <= x + w and y <= ky <= y + h
                    on_mask = bool(m[int(np.floor(ky)), int(np.floor(kx))])
                    assert on_mask == (v == 2)
                    n_occluded_kp += v == 1
        assert seen.max() <= 1
    assert n_occluded_kp > 0


def test_sizes_occlusion_and_long_tail(synth):
    out, result = synth
    summary = result["summary"]
    for s in SIZE_RANGES:
        assert summary["train"]["per_size"][s] + summary["val"]["per_size"][s] > 0, s
    assert summary["train"]["occluded"] > 0 and summary["train"]["truncated"] > 0
    counts = summary["train"]["per_class"]
    assert summary["rare_classes"] and SMALL.classes[0] not in summary["rare_classes"]
    for rare in summary["rare_classes"]:
        assert 0 < counts[rare] < counts[SMALL.classes[0]]
    assert counts[SMALL.classes[0]] > 3 * counts[SMALL.classes[-1]]
    # the summary agrees with the file
    anns = _anns(out / "train.json")["annotations"]
    assert sum(size_range(a["area"]) == "large" for a in anns) == summary["train"]["per_size"]["large"]
    assert json.loads((out / "summary.json").read_text()) == summary


def test_same_config_same_bytes_other_seed_other_data(tmp_path):
    cfg = SynthConfig(seed=5, n_train=6, n_val=2, image_size=64)
    generate_synthetic(tmp_path / "a", cfg)
    generate_synthetic(tmp_path / "b", cfg)
    generate_synthetic(tmp_path / "c", dataclasses.replace(cfg, seed=6))
    for name in ("train.json", "val.json", "images/train/000003.png", "images/val/000001.png"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert (tmp_path / "a" / "train.json").read_bytes() != (tmp_path / "c" / "train.json").read_bytes()


def test_keypoints_off_writes_no_keypoints(tmp_path):
    cfg = SynthConfig(n_train=4, n_val=1, image_size=64, keypoints=False)
    result = generate_synthetic(tmp_path, cfg)
    data = _anns(tmp_path / "train.json")
    assert result["num_keypoints"] == 0
    assert all("keypoints" not in c for c in data["categories"])
    assert all("keypoints" not in a for a in data["annotations"])


def test_config_fields_documented_and_validated(tmp_path):
    for f in dataclasses.fields(SynthConfig):
        assert f.metadata["help"], f.name
    cfg = from_dict(SynthConfig, {"seed": 2, "classes": ["disc", "square"], "keypoints": False})
    assert cfg.classes == ["disc", "square"]
    bad = [
        SynthConfig(classes=["disc", "blob"]),
        SynthConfig(classes=["disc", "square"]),  # keypoints on, no person
        SynthConfig(size_mix=[1.0, 0.0]),
        SynthConfig(min_objects=3, max_objects=2),
        SynthConfig(image_size=16),
    ]
    for cfg in bad:
        with pytest.raises(TicketlabError, match="synth\\."):
            generate_synthetic(tmp_path / "bad", cfg)


def test_ticketlab_coco_loader_reads_the_set(synth):
    from ticketlab.data.coco import CocoDetection

    out, _ = synth
    ds = CocoDetection(out / "val.json", out / "images", task_class("keypoints").data_needs)
    image, target = ds[0]
    assert tuple(image.shape[-2:]) == (SMALL.image_size, SMALL.image_size)
    assert target["keypoints"].shape[1:] == (17, 3)
