"""Every registered task end to end, on tiny models and a few steps: find (2 levels) → report (the
task's curves and verdicts) → sweep aggregation → a transfer-matrix cell with the task as target →
export in every format → eval → info. A task added to the registry without a case here fails
`test_every_registered_task_has_a_case`, so no consumer is left that silently skips a task.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import yaml

from ticketlab.cli import main
from ticketlab.data.synth import SynthConfig, generate_synthetic
from ticketlab.lottery.study import load_study
from ticketlab.registry import EXPORT_FORMATS, TASKS

pytestmark = pytest.mark.slow

TRAIN = {"batch_size": 4, "eval_batch_size": 8, "duration": "2it", "eval_every": "2it", "checkpoint_every": "2it",
         "tensorboard": False, "lr": 0.01}
TINY_RCNN = {"fpn_channels": 16, "anchor_sizes": [16, 32, 64, 128, 256], "rpn_batch_size_per_image": 32,
             "rpn_pre_nms_top_n_train": 50, "rpn_post_nms_top_n_train": 20, "rpn_pre_nms_top_n_test": 30,
             "rpn_post_nms_top_n_test": 10, "box_batch_size_per_image": 16, "box_representation_size": 16,
             "box_detections_per_img": 10, "mask_head_channels": 8,
             # an untrained detector's near-equal scores make NMS order fragile between runtimes; the
             # numeric export checks of a trained detector are tests/test_deploy_export.py's
             "box_score_thresh": 0.9, "mask_head_depth": 1,
             "keypoint_head_channels": 8, "keypoint_head_depth": 1}
DIGITS = {"format": "digits", "image_size": 8}
LENET = {"family": "lenet_300_100", "width": 0.1}


def _coco(root: Path) -> dict:
    return {"format": "coco", "root": str(root), "train": "train.json", "val": "val.json", "image_size": 64}


def _rcnn(family: str) -> dict:
    return {"family": family, "backbone": "resnet18", "width": 0.125, "detection": TINY_RCNN}


CASES = {  # task → (model, data, extra config) for a run of a few seconds
    "classification": lambda root: (LENET, DIGITS, {}),
    "detection": lambda root: (_rcnn("fasterrcnn"), _coco(root), {}),
    "instance_segmentation": lambda root: (_rcnn("maskrcnn"), _coco(root), {}),
    "keypoints": lambda root: (_rcnn("keypointrcnn"), _coco(root), {}),
    "semantic_segmentation": lambda root: (
        {"family": "deeplabv3", "backbone": "resnet18", "width": 0.125, "segmentation": {"head_channels": 8}},
        {"format": "voc_seg", "root": str(root), "image_size": 64}, {}),
    "simclr": lambda root: (LENET, DIGITS, {"ssl": {"knn_k": 5}}),
    "moco": lambda root: (LENET, DIGITS, {"ssl": {"knn_k": 5, "moco_queue": 16}}),
}


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    generate_synthetic(root, SynthConfig(image_size=64, n_train=4, n_val=2, seed=3))
    return root


def test_every_registered_task_has_a_case():
    assert set(TASKS.names()) == set(CASES)


def _config(tmp: Path, task: str, synth: Path) -> Path:
    model, data, extra = CASES[task](synth)
    cfg = {"task": task, "model": model, "data": data, "train": TRAIN,
           "prune": {"rate": 0.5, "levels": 1, "exclude": ["stem"] if task != "classification" and
                     model["family"] != "lenet_300_100" else []}, **extra}
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    status = main(argv)
    out = capsys.readouterr()
    return status, out.out, out.err


@pytest.mark.parametrize("task", sorted(CASES))
def test_task_end_to_end(tmp_path, synth, capsys, task):
    config = _config(tmp_path, task, synth)
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump({"config": str(config), "grid": {"train.seed": [0]}}))
    run = tmp_path / "study" / "cells" / load_study(study).cells()[0].name

    # find (2 levels), then the sweep finds its cell finished and aggregates
    assert _run(["find", str(config), "--out", str(run)], capsys)[0] == 0
    record = json.loads((run / "task.json").read_text())
    headline = TASKS.get(task).headline
    assert record["task"] == task and record["headline"] == headline and record["higher_is_better"] is True
    assert _run(["sweep", str(study), "--out", str(tmp_path / "study")], capsys)[0] == 0
    with open(tmp_path / "study" / "aggregate.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["level"] for r in rows] == ["0", "1"] and rows[1]["headline"] == headline
    assert rows[1]["matching"] in ("yes", "no") and rows[1][f"{headline}_mean"]

    # report: a curve per metric the task reports, the headline's with verdicts
    status, out, _ = _run(["report", str(run), "--out", str(tmp_path / "report")], capsys)
    assert status == 0
    page = (tmp_path / "report" / "index.html").read_text()
    assert (tmp_path / "report" / f"{headline}_vs_sparsity.png").is_file()
    assert "Matching: " in page and f"{headline} (the metric of the matching verdicts)" in page
    for other in TASKS.get(task).metrics:
        if other != headline and other in json.loads((run / "level_01" / "metrics.json").read_text()):
            assert (tmp_path / "report" / f"{other}_vs_sparsity.png").is_file()

    # transfer-matrix: the task as target, level 1's mask as the source; the dense cell is this run
    matrix = tmp_path / "matrix"
    shutil.copytree(run, matrix / "dense" / "t" / "seed_0")
    spec = tmp_path / "matrix.yaml"
    spec.write_text(yaml.safe_dump({"targets": {"t": {"config": str(config)}}, "seeds": [0], "sources": {
        "m": [f"init.source={run / 'level_01'}", "init.mode=mask", "init.map=shared", "prune.levels=0"]}}))
    status, _, err = _run(["transfer-matrix", str(spec), "--out", str(matrix)], capsys)
    assert status == 0, err
    with open(matrix / "matrix.csv") as f:
        cells = {r["source"]: r for r in csv.DictReader(f)}
    assert cells["m"]["metric"] == headline and cells["m"]["matching"] in ("True", "False")

    # export: every registered format checks its file against the masked model; a format whose
    # declaration does not take this ticket's granularity refuses it in one line, nothing written
    granularity = yaml.safe_load((run / "config.yaml").read_text())["prune"]["granularity"]
    for fmt, declared in EXPORT_FORMATS.items():
        status, out, err = _run(["export", str(run / "level_01"), "--format", fmt,
                                 "--out", str(tmp_path / f"ticket_{fmt}")], capsys)
        if declared.granularities is not None and granularity not in declared.granularities:
            assert status == 2 and len(err.strip().splitlines()) == 1, err
            assert f"prune.granularity {granularity}" in err and all(g in err for g in declared.granularities), err
            assert not (tmp_path / f"ticket_{fmt}").exists()
            continue
        assert status == 0, err
        assert "checked with" in out and (tmp_path / f"ticket_{fmt}").is_file()

    # eval gives the numbers find recorded; info reports the level's sparsity
    status, out, _ = _run(["eval", str(run / "level_01")], capsys)
    recorded = json.loads((run / "level_01" / "metrics.json").read_text())
    value = float(next(line.split(": ")[1] for line in out.splitlines() if line.startswith(f"{headline}: ")))
    assert status == 0 and value == pytest.approx(recorded[headline], abs=1e-6)
    status, out, _ = _run(["info", str(run / "level_01")], capsys)
    assert status == 0 and f"scope sparsity {recorded['sparsity_scope']:.4f}" in out
