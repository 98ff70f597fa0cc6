"""`ticketlab report` on tiny synthetic detection runs: `find` leaves each level's val detections
in level_NN/detections.json, and the report breaks them down by size and category and sorts their
errors, with numbers equal to pycocotools' COCOeval on those same detections."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import shutil

import pytest
from pycocotools.coco import COCO as RefCOCO
from pycocotools.cocoeval import COCOeval as RefCOCOeval

from ticketlab.cli import main
from ticketlab.config import load_config
from ticketlab.data.synth import SynthConfig, generate_synthetic
from ticketlab.lottery.imp import run_imp

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

TINY = ["train.duration=2it", "train.eval_every=2it", "train.checkpoint_every=2it", "train.batch_size=2",
        "prune.levels=1", "model.width=0.25", "model.detection.box_score_thresh=0.0"]


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    generate_synthetic(out, SynthConfig(n_train=4, n_val=3, seed=3))
    return out


def make_run(synth, tmp_path_factory, config: str):
    run = tmp_path_factory.mktemp("run") / "run"
    run_imp(load_config(config, [f"data.root={synth}", *TINY]), run, log=lambda s: None)
    return run


@pytest.fixture(scope="module")
def seg_run(synth, tmp_path_factory):
    return make_run(synth, tmp_path_factory, "configs/synth_maskrcnn_lite.yaml")


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def pycoco_stats(val_json, dets_json, iou_type, cat_ids=None):
    with contextlib.redirect_stdout(io.StringIO()):
        gt = RefCOCO(str(val_json))
        results = [{k: d[k] for k in ("image_id", "category_id", "score",
                                      {"bbox": "bbox", "segm": "segmentation", "keypoints": "keypoints"}[iou_type])}
                   for d in json.loads(dets_json.read_text())]
        ev = RefCOCOeval(gt, gt.loadRes(results), iou_type)
        if cat_ids is not None:
            ev.params.catIds = cat_ids
        ev.evaluate(), ev.accumulate(), ev.summarize()
    return ev.stats


def test_find_writes_the_detections_eval_would_save(seg_run, tmp_path):
    saved = tmp_path / "again.json"
    assert main(["eval", str(seg_run / "level_01"), "--save-detections", str(saved)]) == 0
    ours = json.loads((seg_run / "level_01" / "detections.json").read_text())
    again = json.loads(saved.read_text())
    assert len(ours) == len(again) > 0
    assert [d["score"] for d in ours] == pytest.approx([d["score"] for d in again], abs=1e-5)


def test_report_sections_match_pycocotools(seg_run, synth, tmp_path):
    out = tmp_path / "report"
    assert main(["report", str(seg_run), "--out", str(out)]) == 0
    html = (out / "index.html").read_text()
    for name in ("ap_by_size_run", "ap_by_category_run", "ap_easy_hard_run", "tide_errors_run"):
        assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f'src="{name}.png"' in html
    assert "dense = level 0 vs level 1 (50.0%)" in html

    sizes = read_csv(out / "ap_by_size_run.csv")
    for level in (0, 1):
        for iou_type in ("bbox", "segm"):
            stats = pycoco_stats(synth / "val.json", seg_run / f"level_{level:02d}" / "detections.json", iou_type)
            got = {r["area"]: float(r["AP"]) for r in sizes if r["level"] == str(level) and r["iou_type"] == iou_type}
            assert got == pytest.approx(dict(zip(("small", "medium", "large"), stats[3:6])), abs=1e-9)

    tide = read_csv(out / "tide_errors_run.csv")
    assert sorted((r["level"], r["iou_type"]) for r in tide) == [("0", "bbox"), ("0", "segm"), ("1", "bbox"),
                                                                 ("1", "segm")]
    categories = read_csv(out / "ap_by_category_run.csv")
    train = json.loads((synth / "train.json").read_text())
    for r in categories:
        assert int(r["train_annotations"]) == sum(a["category_id"] == int(r["category_id"])
                                                  for a in train["annotations"])


def test_report_says_how_to_make_missing_detections(seg_run, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(seg_run, old)
    (old / "level_00" / "detections.json").unlink()
    assert main(["report", str(old), "--out", str(tmp_path / "report")]) == 0
    html = (tmp_path / "report" / "index.html").read_text()
    assert "--save-detections" in html and "ap_by_size" not in html


@pytest.mark.slow
def test_keypoint_run_gets_keypoint_errors(synth, tmp_path_factory, tmp_path):
    run = make_run(synth, tmp_path_factory, "configs/synth_keypointrcnn_lite.yaml")
    out = tmp_path / "report"
    assert main(["report", str(run), "--out", str(out)]) == 0
    rows = read_csv(out / "keypoint_errors_run.csv")
    val = json.loads((synth / "val.json").read_text())
    people = sum(1 for a in val["annotations"] if any(v > 0 for v in a.get("keypoints", [])[2::3]))
    assert [r["level"] for r in rows] == ["0", "1"] and all(int(r["people"]) == people for r in rows)
    sizes = read_csv(out / "ap_by_size_run.csv")
    kp_cats = [c["id"] for c in val["categories"] if c.get("keypoints")]
    stats = pycoco_stats(synth / "val.json", run / "level_01" / "detections.json", "keypoints", kp_cats)
    got = {r["area"]: float(r["AP"]) for r in sizes if r["level"] == "1" and r["iou_type"] == "keypoints"}
    assert got == pytest.approx(dict(zip(("medium", "large"), stats[3:5])), abs=1e-9)
    fixes = read_csv(out / "keypoint_fixes_run.csv")
    assert len(fixes) == 2 * 8 and (out / "keypoint_fixes_run.png").is_file()
    original = next(r for r in fixes if r["level"] == "1" and r["fixed"] == "Original")
    assert float(original["keypoints_AP"]) == pytest.approx(stats[0], abs=1e-9)  # unfixed = COCO's own AP
