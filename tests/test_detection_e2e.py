"""IMP on the three R-CNN families end to end, on a tiny synthetic set, through the real CLI paths."""

import json
import warnings

import pytest
import yaml
from safetensors.torch import load_file

from ticketlab.cli import main
from ticketlab.config import load_config
from ticketlab.data.synth import SynthConfig, generate_synthetic
from ticketlab.lottery.demo import demo_config_path
from ticketlab.lottery.imp import run_imp
from ticketlab.sparsity import load_mask

CONFIGS = {
    "detection": ("configs/synth_fasterrcnn_lite.yaml", "bbox_AP"),
    "instance_segmentation": ("configs/synth_maskrcnn_lite.yaml", "segm_AP"),
    "keypoints": ("configs/synth_keypointrcnn_lite.yaml", "keypoints_AP"),
}
TINY = ["train.duration=3it", "train.eval_every=3it", "train.checkpoint_every=2it", "train.batch_size=2",
        "prune.levels=1", "model.width=0.25",
        "model.detection.box_score_thresh=0.0"]  # a barely trained model still returns detections to score


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    generate_synthetic(out, SynthConfig(n_train=6, n_val=4, seed=3))
    return out


def test_demo_preset_is_the_lite_faster_rcnn_config():
    demo = yaml.safe_load(demo_config_path().read_text())
    lite = yaml.safe_load(open("configs/synth_fasterrcnn_lite.yaml"))
    assert demo == lite


@pytest.mark.slow
@pytest.mark.parametrize("task", list(CONFIGS))
def test_two_levels_and_metrics_match_pycocotools(task, synth, tmp_path):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    path, headline = CONFIGS[task]
    cfg = load_config(path, [f"data.root={synth}", *TINY])
    run = tmp_path / "run"
    rows = run_imp(cfg, run, log=lambda s: None)
    assert [r["level"] for r in rows] == [0, 1]
    assert rows[1]["sparsity_scope"] == pytest.approx(0.5, abs=1e-4)
    assert rows[1]["sparsity_network"] < rows[1]["sparsity_scope"]
    metrics = json.loads((run / "level_01" / "metrics.json").read_text())
    assert headline in metrics

    # the AP written by `find` equals pycocotools' own COCOeval on the saved detections
    dets = tmp_path / "dets.json"
    assert main(["eval", str(run / "level_01"), "--save-detections", str(dets)]) == 0
    results = json.loads(dets.read_text())
    iou_type = {"detection": "bbox", "instance_segmentation": "segm", "keypoints": "keypoints"}[task]
    assert len(results) > 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gt = COCO(str(synth / "val.json"))
        ev = COCOeval(gt, gt.loadRes(str(dets)), iou_type)
        if task == "keypoints":
            ev.params.catIds = [c["id"] for c in gt.loadCats(gt.getCatIds()) if c.get("keypoints")]
        ev.evaluate(), ev.accumulate(), ev.summarize()
    assert metrics[headline] == pytest.approx(max(float(ev.stats[0]), -1.0), abs=1e-6)


@pytest.mark.slow
def test_scope_base_prunes_only_the_resnet_stem_and_layers_1_to_3(synth, tmp_path):
    cfg = load_config(CONFIGS["detection"][0], [f"data.root={synth}", *TINY, "prune.scope=[base]", "prune.exclude=[]"])
    run = tmp_path / "run"
    run_imp(cfg, run, log=lambda s: None)
    mask = load_mask(run / "level_01" / "mask.safetensors")
    prefixes = ("backbone.body.conv1.", "backbone.body.layer1.", "backbone.body.layer2.", "backbone.body.layer3.")
    assert mask and all(name.startswith(prefixes) for name in mask)
    assert any(".downsample." in name for name in mask)  # shortcut convs belong to the group too
    assert any(name.startswith("backbone.body.layer3.") for name in mask)
    start = load_file(str(run / "level_01" / "rewind.safetensors"))
    init = load_file(str(run / "level_00" / "rewind.safetensors"))
    for name, value in start.items():
        if name not in mask:
            assert (value == init[name]).all(), name  # outside the scope: rewound, never masked


def test_info_lists_detection_groups(synth, capsys):
    assert main(["info", CONFIGS["instance_segmentation"][0], "--set", f"data.root={synth}"]) == 0
    out = capsys.readouterr().out
    for group in ("base", "top", "fpn", "rpn", "box_head", "box_predictor", "mask_head", "mask_predictor"):
        assert f" {group} " in f" {out} ".replace("\n", " ")
