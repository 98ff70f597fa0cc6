"""DetectionTask with real (tiny) torchvision R-CNNs on our dataset's targets: loss terms, a training
step on a batch holding an image without objects, and evaluation end to end."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader
from torchvision.models.detection import FasterRCNN, KeypointRCNN, MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.keypoint_rcnn import KeypointRCNNHeads, KeypointRCNNPredictor
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads
from torchvision.ops import MultiScaleRoIAlign

from test_coco_files import write_coco_dir
from ticketlab.config import DataConfig
from ticketlab.data.detection import build_detection_data
from ticketlab.tasks import build_task, task_class
from ticketlab.tasks.coco_eval import DET_STATS, KP_STATS

MODELS = {"detection": FasterRCNN, "instance_segmentation": MaskRCNN, "keypoints": KeypointRCNN}
LOSS_TERMS = {
    "detection": {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"},
    "instance_segmentation": {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg", "loss_mask"},
    "keypoints": {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg", "loss_keypoint"},
}


def tiny_model(task: str, num_classes: int, num_keypoints: int) -> nn.Module:
    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Conv2d(3, 8, 3, stride=4, padding=1), nn.ReLU())
    backbone.out_channels = 8
    kwargs = dict(rpn_anchor_generator=AnchorGenerator(((8, 16, 32),), ((0.5, 1.0, 2.0),)),
                  box_roi_pool=MultiScaleRoIAlign(["0"], 7, 2), min_size=32, max_size=48,
                  rpn_pre_nms_top_n_test=50, rpn_post_nms_top_n_test=20, box_detections_per_img=8,
                  box_score_thresh=0.0)
    if task == "instance_segmentation":  # heads narrowed from torchvision's 256/512 channels: CPU seconds
        kwargs.update(mask_roi_pool=MultiScaleRoIAlign(["0"], 14, 2), mask_head=MaskRCNNHeads(8, [16, 256], 1))
    if task == "keypoints":
        kwargs.update(keypoint_roi_pool=MultiScaleRoIAlign(["0"], 14, 2), keypoint_head=KeypointRCNNHeads(8, [16, 16]),
                      keypoint_predictor=KeypointRCNNPredictor(16, num_keypoints))
    return MODELS[task](backbone, num_classes=num_classes, **kwargs)


@pytest.mark.parametrize("task_name", ["detection", "instance_segmentation", "keypoints"])
def test_loss_step_and_evaluation(tmp_path, task_name):
    write_coco_dir(tmp_path, name="train.json")
    (tmp_path / "val.json").write_text((tmp_path / "train.json").read_text())
    cfg = DataConfig(format="coco", root=str(tmp_path), train="train.json", val="val.json")
    data = build_detection_data(cfg, task_class(task_name).data_needs)
    task = build_task(task_name, data)
    model = tiny_model(task_name, data.num_classes, data.train.meta.num_keypoints)
    loader = DataLoader(data.train, batch_size=2, collate_fn=data.collate_fn)
    device = torch.device("cpu")
    model.train()
    batch = next(iter(loader))
    assert len(batch[1][1]["boxes"]) == 0  # the second image has no objects
    terms = task.loss(model, batch, device)
    assert set(terms) == {"loss"} | LOSS_TERMS[task_name]
    assert torch.isfinite(terms["loss"]) and torch.allclose(terms["loss"], sum(v for k, v in terms.items() if k != "loss"))
    terms["loss"].backward()
    assert model.backbone[0].weight.grad is not None
    model.eval()
    metrics = task.evaluate(model, DataLoader(data.val, batch_size=2, collate_fn=data.collate_fn), device)
    want = {f"bbox_{n}" for n in DET_STATS}
    want |= {f"segm_{n}" for n in DET_STATS} if task_name == "instance_segmentation" else set()
    want |= {f"keypoints_{n}" for n in KP_STATS} if task_name == "keypoints" else set()
    want |= {"voc07_mAP", "voc_mAP"} if task_name == "detection" else set()  # every box-only run (tasks/detection.py)
    losses = {"val_loss"} | {f"val_{t}" for t in LOSS_TERMS[task_name]}
    assert set(metrics) == want | losses and task.headline in metrics
    assert all(-1.0 <= metrics[k] <= 1.0 for k in want)
    assert metrics["val_loss"] == pytest.approx(sum(metrics[k] for k in losses - {"val_loss"}))
    assert not model.training  # the validation loss left the model in eval mode
