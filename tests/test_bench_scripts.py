"""The benchmarks compare like with like: what bench/ times is checked against independent references.

masked_step.py times four arms; that only means something if ticketlab's MaskEnforcer,
torch.nn.utils.prune and an open_lth-style re-mask train the same sparse network. coco_eval.py
times two evaluators on its synthetic set; they must agree with pycocotools there too.
"""

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from coco_eval import pycocotools_stats, synthetic_set, ticketlab_stats  # noqa: E402
from maskers import ARMS, Arm, magnitude_mask, workload  # noqa: E402


def test_three_maskers_train_the_same_sparse_faster_rcnn():
    work = workload("fasterrcnn_r18", image_size=64, batch=2, device=torch.device("cpu"))
    torch.manual_seed(0)
    mask = magnitude_mask(work.build(), 0.8)
    arms = {k: Arm(k, work, mask) for k in ARMS}
    for step in range(3):
        for arm in arms.values():
            torch.manual_seed(step)  # same anchors / proposals sampled in every arm
            arm.step()
    weights = {k: arm.effective_weights() for k, arm in arms.items()}
    ours = weights["ticketlab"]
    for name, keep in mask.items():
        assert bool((ours[name][~keep] == 0).all())
        for other in ("torch", "open_lth"):
            torch.testing.assert_close(weights[other][name], ours[name], rtol=0, atol=0)
    moved = [n for n in mask if not torch.equal(weights["dense"][n] * mask[n], ours[n])]
    assert moved  # the mask changed training: the kept weights did not follow the dense run


def test_synthetic_coco_set_scores_the_same_as_pycocotools():
    gt, results = synthetic_set(40, seed=3)
    assert any(a["iscrowd"] for a in gt["annotations"])
    ours, ref = ticketlab_stats(gt, results), pycocotools_stats(gt, results)
    assert (ref[3:6] > -1).all()  # small, medium and large objects all present
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-6)
