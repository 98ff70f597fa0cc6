"""YOLOv4 and SSD end to end: `ticketlab find` for 2 IMP levels with the heads dense, and a classifier's
ticket transferred into their ResNet (`init: {map: backbone}`)."""

import json

import pytest
import torch
from safetensors.torch import load_file

from ticketlab.cli import main
from ticketlab.config import load_config
from ticketlab.data.synth import SynthConfig, generate_synthetic
from ticketlab.data.synth.crops import CropConfig, write_crops
from ticketlab.lottery.imp import run_imp
from ticketlab.sparsity import load_mask

CONFIGS = {"yolov4": ("configs/synth_yolov4_lite.yaml", ["model.yolo.neck_channels=16", "model.yolo.score_thresh=0.0"]),
           "ssd": ("configs/synth_ssd_lite.yaml", ["model.ssd.extra_channels=[32,16,16]", "model.ssd.score_thresh=0.0"])}
TINY = ["train.duration=2it", "train.eval_every=2it", "train.checkpoint_every=2it", "train.batch_size=2",
        "train.warmup=0it", "model.width=0.125", "data.image_size=64"]
STAGES = tuple(f"backbone.body.layer{i}." for i in range(1, 5))


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    generate_synthetic(out, SynthConfig(n_train=4, n_val=3, seed=5, image_size=64))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("family", list(CONFIGS))
def test_find_two_levels_prunes_the_resnet_stages_and_scores_coco_and_voc(family, synth, tmp_path):
    path, sizes = CONFIGS[family]
    run = tmp_path / "run"
    args = ["find", path, "--out", str(run)]
    for item in [f"data.root={synth}", *TINY, *sizes, "prune.levels=2"]:
        args += ["--set", item]
    assert main(args) == 0
    summary = (run / "summary.csv").read_text().splitlines()
    assert len(summary) == 4  # header + levels 0, 1, 2
    metrics = json.loads((run / "level_02" / "metrics.json").read_text())
    assert metrics["sparsity_scope"] == pytest.approx(0.75, abs=1e-3)
    for key in ("bbox_AP", "bbox_AP50", "bbox_AP75", "voc07_mAP"):
        assert key in metrics
    mask = load_mask(run / "level_02" / "mask.safetensors")
    assert mask and all(name.startswith(STAGES) for name in mask)
    final = load_file(str(run / "level_02" / "final.safetensors"))
    for name, tensor in final.items():
        if name.startswith(("backbone.body.conv1", "head.", "neck.", "backbone.extra.")) and name.endswith("weight"):
            assert torch.count_nonzero(tensor) == tensor.numel(), name  # stem, neck and heads stay dense


@pytest.mark.slow
def test_a_classifier_ticket_lands_in_both_detectors_backbones(synth, tmp_path):
    crops = tmp_path / "crops"
    write_crops(crops, SynthConfig(n_train=12, n_val=4, seed=2), CropConfig(crop_size=32))
    cls_cfg = load_config("configs/paper002_cpu_supervised.yaml", [
        f"data.root={crops}", "model.family=resnet50", "model.width=0.125", "train.duration=2it",
        "train.eval_every=2it", "train.checkpoint_every=2it", "train.batch_size=8", "prune.levels=1", "prune.rate=0.6"])
    run_imp(cls_cfg, tmp_path / "classifier", log=lambda s: None)
    level = tmp_path / "classifier" / "level_01"
    mask = load_mask(level / "mask.safetensors")
    assert mask and all(name.startswith("layer") for name in mask)
    for family, (path, sizes) in CONFIGS.items():
        cfg = load_config(path, [f"data.root={synth}", *TINY, *sizes, "prune.levels=0", f"init.source={level}",
                                 "init.map=backbone"])
        out = tmp_path / family
        run_imp(cfg, out, log=lambda s: None)
        final = load_file(str(out / "level_00" / "final.safetensors"))
        source = load_file(str(level / "final.safetensors"))
        for name, keep in mask.items():
            target = final[f"backbone.body.{name}"]
            assert torch.count_nonzero(target[~keep]) == 0, name  # the classifier's zeros stay zero
        start = load_file(str(out / "level_00" / "rewind.safetensors"))
        for name in ("conv1.weight", "layer3.0.downsample.0.weight", "layer4.2.conv3.weight"):
            assert torch.equal(start[f"backbone.body.{name}"], source[name]), name  # ticket: the classifier's values
        metrics = json.loads((out / "level_00" / "metrics.json").read_text())
        assert metrics["sparsity_scope"] == pytest.approx(0.6, abs=1e-3), family
