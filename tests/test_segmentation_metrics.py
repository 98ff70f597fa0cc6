"""mIoU, pixel accuracy and per-class IoU against sklearn's confusion matrix on the non-ignored pixels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import confusion_matrix as sk_confusion_matrix
from sklearn.metrics import jaccard_score

from ticketlab.tasks.segmentation_metrics import confusion_matrix, iou_per_class, segmentation_metrics

NAMES = ["background", "a", "b", "c"]


def _hand_made():
    # 2 images of 3×4; 255 marks ignored pixels (borders), whatever the prediction there
    target = torch.tensor([[[0, 0, 1, 1], [0, 255, 1, 1], [2, 2, 255, 0]],
                           [[0, 0, 0, 0], [2, 2, 255, 255], [2, 2, 0, 1]]])
    pred = torch.tensor([[[0, 1, 1, 1], [0, 3, 1, 0], [2, 0, 3, 0]],
                         [[0, 0, 0, 2], [2, 2, 1, 0], [2, 0, 0, 1]]])
    return pred, target


def _reference(pred: torch.Tensor, target: torch.Tensor, n: int):
    keep = target.numpy() != 255
    t, p = target.numpy()[keep], pred.numpy()[keep]
    conf = sk_confusion_matrix(t, p, labels=list(range(n)))
    inter = np.diag(conf)
    union = conf.sum(0) + conf.sum(1) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = inter / union
    return conf, iou, inter.sum() / conf.sum(), t, p


def test_hand_made_case_equals_sklearn_with_ignore_label():
    pred, target = _hand_made()
    conf = confusion_matrix(pred, target, 4)
    ref_conf, ref_iou, ref_acc, t, p = _reference(pred, target, 4)
    assert np.array_equal(conf.numpy(), ref_conf)
    assert conf.sum() == (target != 255).sum() == 20  # the 4 ignored pixels count nowhere
    m = segmentation_metrics(conf, NAMES)
    # class 3 ("c") is predicted only on ignored pixels and never in the ground truth: no IoU, not in the mean
    assert "iou_c" not in m and np.isnan(ref_iou[3])
    assert m["mIoU"] == pytest.approx(np.nanmean(ref_iou))
    # sklearn's own per-class Jaccard on the kept pixels, for the classes that occur
    jac = jaccard_score(t, p, labels=[0, 1, 2], average=None)
    assert [m["iou_background"], m["iou_a"], m["iou_b"]] == pytest.approx(list(jac))
    assert m["pixel_accuracy"] == pytest.approx(ref_acc)


def test_ignored_pixels_do_not_change_anything():
    pred, target = _hand_made()
    scrambled = pred.clone()
    scrambled[target == 255] = torch.tensor([1, 2, 3, 3])  # other predictions on the ignored pixels only
    assert torch.equal(confusion_matrix(scrambled, target, 4), confusion_matrix(pred, target, 4))


def test_random_batches_accumulate_like_one_matrix():
    gen = torch.Generator().manual_seed(0)
    n = 6
    target = torch.randint(0, n, (5, 17, 13), generator=gen)
    target[torch.rand(target.shape, generator=gen) < 0.1] = 255
    pred = torch.randint(0, n, target.shape, generator=gen)
    summed = sum(confusion_matrix(pred[i], target[i], n) for i in range(5))
    ref_conf, ref_iou, _, _, _ = _reference(pred, target, n)
    assert np.array_equal(summed.numpy(), ref_conf)
    assert iou_per_class(summed).numpy() == pytest.approx(ref_iou)


def test_labels_outside_the_class_range_are_rejected():
    pred, target = _hand_made()
    bad = target.clone()
    bad[0, 0, 0] = 7
    with pytest.raises(ValueError, match="target labels"):
        confusion_matrix(pred, bad, 4)
    with pytest.raises(ValueError, match="pred labels"):
        confusion_matrix(pred + 4, target, 4)
