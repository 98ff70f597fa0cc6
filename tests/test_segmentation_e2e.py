"""IMP on DeepLabV3 end to end on a tiny synthetic set: the lite config, `find` and `eval`, and the
mIoU they write checked against sklearn's confusion matrix of the saved model's predictions."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from sklearn.metrics import confusion_matrix as sk_confusion_matrix

from ticketlab.cli import main
from ticketlab.config import load_config
from ticketlab.data.synth import SynthConfig, generate_synthetic
from ticketlab.lottery.imp import run_imp
from ticketlab.models import build_model
from ticketlab.tasks import build_task_data

TINY = ["train.duration=2it", "train.eval_every=2it", "train.checkpoint_every=1it", "train.batch_size=2",
        "train.eval_batch_size=3", "prune.levels=1", "model.width=0.125", "model.segmentation.head_channels=8",
        "model.segmentation.aux_loss=true", "data.image_size=48"]


@pytest.mark.slow
def test_lite_config_two_levels_and_miou_matches_sklearn(tmp_path):
    synth = tmp_path / "synth"
    generate_synthetic(synth, SynthConfig(n_train=4, n_val=3, seed=2, image_size=64))
    cfg = load_config("configs/synth_deeplabv3_lite.yaml", [f"data.root={synth}", *TINY])
    run = tmp_path / "run"
    rows = run_imp(cfg, run, log=lambda s: None)
    assert [r["level"] for r in rows] == [0, 1]
    assert rows[1]["sparsity_scope"] == pytest.approx(0.5, abs=1e-3)
    final = load_file(str(run / "level_01" / "final.safetensors"))
    assert (final["backbone.conv1.weight"] != 0).all() and (final["classifier.4.weight"] != 0).all()  # kept dense
    written = json.loads((run / "level_01" / "metrics.json").read_text())
    assert main(["eval", str(run / "level_01")]) == 0

    # independent: the saved weights' argmax predictions on the val images, sklearn's confusion matrix
    data = build_task_data(cfg)
    model = build_model(cfg.model, data).module
    model.load_state_dict(final)
    model.eval()
    conf = np.zeros((data.num_classes, data.num_classes), dtype=np.int64)
    with torch.no_grad():
        for image, mask in data.val:
            pred = model(image[None])["out"][0].argmax(0).numpy()
            keep = mask.numpy() != 255
            conf += sk_confusion_matrix(mask.numpy()[keep], pred[keep], labels=list(range(data.num_classes)))
    inter = np.diag(conf)
    union = conf.sum(0) + conf.sum(1) - inter
    miou = np.mean(inter[union > 0] / union[union > 0])
    assert written["mIoU"] == pytest.approx(miou, abs=1e-9)
    assert written["pixel_accuracy"] == pytest.approx(inter.sum() / conf.sum(), abs=1e-9)
