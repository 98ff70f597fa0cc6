"""Paper 001's VOC path end to end: synthetic scenes written as VOC2007, the C4 Faster R-CNN trained
on trainval and scored on test, its headline VOC07 mAP equal to an independent VOC07 computation on
the same detections; and 07+12 splits joining two year directories."""

from __future__ import annotations

import csv
import json
import random

import numpy as np
import pytest

from ticketlab.cli import main
from ticketlab.config import Config, DataConfig, load_config
from ticketlab.data.detection import build_detection_data
from ticketlab.data.synth import SynthConfig, generate_synthetic
from ticketlab.data.voc import voc_to_coco
from ticketlab.data.voc_write import synth_to_voc
from ticketlab.errors import TicketlabError
from ticketlab.lottery.imp import run_imp
from ticketlab.tasks import build_task

TINY = ["train.duration=3it", "train.eval_every=3it", "train.checkpoint_every=3it", "train.batch_size=2",
        "prune.levels=0", "model.width=0.25", "model.detection.box_score_thresh=0.0"]


def reference_voc07_map(gt: dict, dets: list[dict]) -> float:
    """VOC2007 devkit mAP@0.5 written out plainly: per class, detections by falling score take their
    best-overlap box; > 0.5 on a difficult box is ignored, on a free box a hit, else a false alarm;
    precision is maxed over recall ≥ t for t = 0, 0.1, …, 1 and averaged; classes without
    non-difficult objects are skipped."""
    aps = []
    for cat in sorted({a["category_id"] for a in gt["annotations"]}):
        objs = [a for a in gt["annotations"] if a["category_id"] == cat]
        npos = sum(1 for a in objs if not a["difficult"])
        if npos == 0:
            continue
        taken = [False] * len(objs)
        hits = []
        for d in sorted((d for d in dets if d["category_id"] == cat), key=lambda d: -d["score"]):
            best, where = 0.0, -1
            for i, a in enumerate(objs):
                if a["image_id"] != d["image_id"]:
                    continue
                ax, ay, aw, ah = a["bbox"]
                dx, dy, dw, dh = d["bbox"]
                iw = max(0.0, min(ax + aw, dx + dw) - max(ax, dx))
                ih = max(0.0, min(ay + ah, dy + dh) - max(ay, dy))
                overlap = iw * ih / (aw * ah + dw * dh - iw * ih)
                if overlap > best:
                    best, where = overlap, i
            if best > 0.5 and objs[where]["difficult"]:
                continue
            hit = best > 0.5 and not taken[where]
            if hit:
                taken[where] = True
            hits.append(hit)
        ap = 0.0
        for t in [k / 10 for k in range(11)]:
            best_p = 0.0
            for n in range(1, len(hits) + 1):
                tp = sum(hits[:n])
                if tp / npos >= t:
                    best_p = max(best_p, tp / n)
            ap += best_p / 11
        aps.append(ap)
    return float(np.mean(aps)) if aps else 0.0


def test_reference_on_a_hand_checked_case():
    """2 objects of class 1 (one in each image) + a difficult one; detections by score: hit, on the
    difficult one (ignored), miss, hit → hits T, F, T: precision 1, 1/2, 2/3 at recall .5, .5, 1
    → 11-point: 6 × 1 + 5 × 2/3 = 28/33."""
    gt = {"annotations": [
        {"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "difficult": 0},
        {"image_id": 2, "category_id": 1, "bbox": [0, 0, 10, 10], "difficult": 0},
        {"image_id": 2, "category_id": 1, "bbox": [40, 40, 10, 10], "difficult": 1}]}
    dets = [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 9], "score": 0.9},
            {"image_id": 2, "category_id": 1, "bbox": [40, 40, 10, 10], "score": 0.8},
            {"image_id": 1, "category_id": 1, "bbox": [30, 30, 5, 5], "score": 0.7},
            {"image_id": 2, "category_id": 1, "bbox": [1, 0, 10, 10], "score": 0.6}]
    assert reference_voc07_map(gt, dets) == pytest.approx(28 / 33)


@pytest.fixture(scope="module")
def voc07(tmp_path_factory):
    synth = tmp_path_factory.mktemp("synth")
    generate_synthetic(synth, SynthConfig(n_train=6, n_val=4, seed=5, keypoints=False))
    root = tmp_path_factory.mktemp("VOCdevkit") / "VOC2007"
    ids = synth_to_voc(synth, root)
    assert len(ids["trainval"]) == 6 and len(ids["test"]) == 4 and not set(ids["trainval"]) & set(ids["test"])
    return synth, root


def test_written_voc_reads_back_as_the_synthetic_boxes(voc07):
    synth, root = voc07
    source = json.loads((synth / "val.json").read_text())
    back = voc_to_coco(root, "test")
    assert [a["bbox"] for a in back["annotations"]] == [a["bbox"] for a in source["annotations"]]


@pytest.mark.slow
def test_c4_detector_on_voc_scored_with_voc07_map(voc07, tmp_path):
    _, root = voc07
    cfg = load_config("configs/synth_fasterrcnn_c4_lite.yaml",
                      ["data.format=voc", f"data.root={root}", "data.train=trainval", "data.val=test", *TINY])
    run = tmp_path / "run"
    rows = run_imp(cfg, run, log=lambda s: None)
    metrics = json.loads((run / "level_00" / "metrics.json").read_text())
    with open(run / "summary.csv") as f:
        summary = list(csv.DictReader(f))
    assert float(summary[0]["voc07_mAP"]) == pytest.approx(metrics["voc07_mAP"])
    assert rows[0]["voc07_mAP"] == pytest.approx(metrics["voc07_mAP"])
    assert json.loads((run / "task.json").read_text())["headline"] == "voc07_mAP"  # what reports and verdicts read
    history = list(csv.DictReader(open(run / "level_00" / "history.csv")))
    assert float(history[-1]["val_loss"]) > 0  # validation loss terms logged for the convergence figure

    dets = tmp_path / "dets.json"
    assert main(["eval", str(run / "level_00"), "--save-detections", str(dets)]) == 0
    results = json.loads(dets.read_text())
    assert results
    gt = voc_to_coco(root, "test")
    assert metrics["voc07_mAP"] == pytest.approx(reference_voc07_map(gt, results), abs=1e-9)

    # the same scorer on detections that do hit: the model's plus jittered ground-truth boxes
    data = build_detection_data(cfg.data)
    task = build_task("detection", data, cfg)
    assert task.headline == "voc07_mAP"
    rng = random.Random(0)
    near = [{"image_id": a["image_id"], "category_id": a["category_id"], "score": rng.random(),
             "bbox": [a["bbox"][0] + rng.uniform(-2, 2), a["bbox"][1] + rng.uniform(-2, 2), *a["bbox"][2:]]}
            for a in gt["annotations"] for _ in range(rng.randint(0, 2))]
    mixed = results + near
    scored = task.evaluate_results(mixed)["voc07_mAP"]
    assert scored > 0.2 and scored == pytest.approx(reference_voc07_map(gt, mixed), abs=1e-9)


def test_area_ap_is_the_headline_when_asked(voc07):
    _, root = voc07
    cfg = Config(task="detection", data=DataConfig(format="voc", root=str(root), train="trainval", val="test",
                                                   voc_ap="area"))
    task = build_task("detection", build_detection_data(cfg.data), cfg)
    assert task.headline == "voc_mAP" and task.record().headline == "voc_mAP"  # what RUN_DIR/task.json holds


def test_07_plus_12_joins_year_directories(voc07, tmp_path):
    _, root = voc07
    devkit = root.parent
    twelve = devkit / "VOC2012"
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (twelve / sub).mkdir(parents=True)
    stem = "000001"
    (twelve / "Annotations" / "2008_000001.xml").write_text(
        (root / "Annotations" / f"{stem}.xml").read_text())
    image = next((root / "JPEGImages").glob(f"{stem}.*"))
    (twelve / "JPEGImages" / image.name).write_bytes(image.read_bytes())
    (twelve / "ImageSets" / "Main" / "trainval.txt").write_text("2008_000001\n")
    cfg = DataConfig(format="voc", root=str(devkit), train="VOC2007/trainval+VOC2012/trainval", val="VOC2007/test")
    data = build_detection_data(cfg)
    assert len(data.train) == 7 and len(data.val) == 4
    assert data.train.coco_gt["images"][-1]["id"] == 2008000001
    assert data.train.target(6)["boxes"].tolist() == data.train.target(0)["boxes"].tolist()
    with pytest.raises(TicketlabError, match="is in both"):
        build_detection_data(DataConfig(format="voc", root=str(devkit), train="VOC2007/trainval+VOC2007/trainval",
                                        val="VOC2007/test"))
