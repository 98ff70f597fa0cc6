"""YOLO anchors fitted by k-means on box shapes (1 − IoU distance), and the lite config's anchors
giving every stride of YOLOv4 positives on the synthetic scenes."""

import json

import pytest
import torch

from ticketlab.config import load_config
from ticketlab.data.synth import SynthConfig, generate_synthetic
from ticketlab.errors import TicketlabError
from ticketlab.models.yolo_anchors import dimension_clusters, shape_iou
from ticketlab.models.yolo_boxes import STRIDES, default_anchors
from ticketlab.models.yolo_loss import assign


def test_clusters_recover_three_shape_groups_and_ignore_scale_bias():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[10.0, 20.0], [40.0, 40.0], [120.0, 60.0]])
    wh = torch.cat([c * (1 + 0.05 * torch.randn(30, 2, generator=g)) for c in centres])
    anchors = dimension_clusters(wh, k=3)
    assert anchors.shape == (3, 2)
    torch.testing.assert_close(anchors, centres, rtol=0.05, atol=0.0)  # smallest area first, each a group's mean
    assert torch.equal(dimension_clusters(wh.flip(0), k=3), anchors)  # the order of the boxes does not matter
    # every box is nearest (by shape IoU) to the centroid of its own group
    assert torch.equal(shape_iou(wh, anchors).argmax(dim=1), torch.arange(3).repeat_interleave(30))


def test_clusters_refuse_too_few_or_degenerate_boxes():
    with pytest.raises(TicketlabError, match="9 anchors need at least 9 boxes"):
        dimension_clusters(torch.ones(4, 2))
    with pytest.raises(TicketlabError, match="positive box widths"):
        dimension_clusters(torch.zeros(20, 2))


def _positives_per_stride(anchors, data_root):
    coco = json.loads((data_root / "train.json").read_text())
    boxes = {}
    for a in coco["annotations"]:
        x, y, w, h = a["bbox"]
        boxes.setdefault(a["image_id"], []).append([x, y, x + w, y + h])
    targets = [{"boxes": torch.tensor(b), "labels": torch.ones(len(b), dtype=torch.long)} for b in boxes.values()]
    shapes = [(128 // s, 128 // s) for s in STRIDES]
    return [len(level.boxes) for level in assign(targets, anchors, STRIDES, shapes, iou_thresh=0.213)]


def test_lite_config_anchors_give_every_stride_positives_on_the_synthetic_scenes(tmp_path):
    generate_synthetic(tmp_path, SynthConfig(n_train=40, n_val=1, seed=3))
    cfg = load_config("configs/synth_yolov4_lite.yaml", [f"data.root={tmp_path}"])
    lite = torch.tensor(cfg.model.yolo.anchors).view(3, 3, 2)
    per_stride = _positives_per_stride(lite, tmp_path)
    assert min(per_stride) > 0, per_stride
    # YOLOv4's COCO anchors scaled to 128 px leave stride 8 without a single box on these scenes
    assert _positives_per_stride(default_anchors(128), tmp_path)[0] == 0
