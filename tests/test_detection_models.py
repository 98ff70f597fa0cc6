"""R-CNN builders: tiny forward/backward per family, the module-group contract, backbone loading."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

from ticketlab.config import Config, DetectionConfig, ModelConfig, from_dict
from ticketlab.data.bundle import DataBundle
from ticketlab.errors import TicketlabError
from ticketlab.lottery.info import group_table
from ticketlab.models import build_model
from ticketlab.models.detection import partition_groups
from ticketlab.models.resnet import torchvision_resnet
from ticketlab.sparsity.scope import group_of

SIZE = 64
DATA = DataBundle(train=[], val=[], num_classes=4, in_channels=3, image_size=SIZE)
TINY = dict(fpn_channels=16, box_representation_size=32, mask_head_channels=8, mask_head_depth=1,
            keypoint_head_channels=8, keypoint_head_depth=2, anchor_sizes=[8, 16, 32, 64, 128],
            rpn_batch_size_per_image=32, rpn_pre_nms_top_n_train=100, rpn_post_nms_top_n_train=50,
            rpn_pre_nms_top_n_test=50, rpn_post_nms_top_n_test=20, box_batch_size_per_image=32)
LOSSES = {
    "fasterrcnn": {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"},
    "maskrcnn": {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg", "loss_mask"},
    "keypointrcnn": {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg", "loss_keypoint"},
}


DETECTION_FAMILIES = ("fasterrcnn", "maskrcnn", "keypointrcnn")


def _build(family: str, backbone: str = "resnet18", width: float = 0.25, **extra):
    torch.manual_seed(0)
    model = extra.pop("cfg", {})
    detection = from_dict(DetectionConfig, {**TINY, **extra}, "model.detection.")
    return build_model(ModelConfig(family=family, backbone=backbone, width=width, detection=detection, **model), DATA)


def _targets(family: str, n_images: int = 2):
    g = torch.Generator().manual_seed(1)
    targets = []
    for _ in range(n_images):
        xy = torch.randint(0, SIZE // 2, (2, 2), generator=g).float()
        boxes = torch.cat([xy, xy + torch.randint(8, SIZE // 2, (2, 2), generator=g).float()], 1)
        t = {"boxes": boxes, "labels": torch.tensor([1, 3])}
        if family == "maskrcnn":
            masks = torch.zeros(2, SIZE, SIZE, dtype=torch.uint8)
            for k, (x0, y0, x1, y1) in enumerate(boxes.int().tolist()):
                masks[k, y0:y1, x0:x1] = 1
            t["masks"] = masks
        if family == "keypointrcnn":
            u = torch.rand(2, 17, 2, generator=g)
            kp = boxes[:, None, :2] + u * (boxes[:, None, 2:] - boxes[:, None, :2])
            t["keypoints"] = torch.cat([kp, torch.full((2, 17, 1), 2.0)], 2)
        targets.append(t)
    return targets


@pytest.mark.parametrize("family", DETECTION_FAMILIES)
def test_train_step_and_eval_forward(family):
    built = _build(family)
    model = built.module.train()
    images = [torch.rand(3, SIZE, SIZE) for _ in range(2)]
    losses = model(images, _targets(family))
    assert set(losses) == LOSSES[family]
    loss = sum(losses.values())
    assert torch.isfinite(loss)
    loss.backward()
    assert built.module.backbone.body.conv1.weight.grad is not None
    assert built.module.roi_heads.box_head.fc6.weight.grad is not None
    model.eval()
    with torch.no_grad():
        out = model(images)
    assert len(out) == 2 and {"boxes", "labels", "scores"} <= set(out[0])


@pytest.mark.parametrize("family,backbone", [("fasterrcnn", "resnet18"), ("maskrcnn", "resnet50"),
                                             ("keypointrcnn", "resnet34")])
def test_groups_partition_every_parameter(family, backbone):
    built = _build(family, backbone)
    part = partition_groups(family)
    expected = {"base", "top", "fpn", "rpn", "box_head", "box_predictor"}
    expected |= {"mask_head", "mask_predictor"} if family == "maskrcnn" else set()
    expected |= {"keypoint_head", "keypoint_predictor"} if family == "keypointrcnn" else set()
    assert set(part) == expected and set(built.groups) == expected | {"stem"}
    counts = dict.fromkeys(part, 0)
    for name, _ in built.module.named_parameters():
        owners = [g for g in part if group_of(name, {g: built.groups[g]})]
        assert len(owners) == 1, (name, owners)
        counts[owners[0]] += 1
    assert all(counts.values()), counts
    modules = dict(built.module.named_modules())
    for paths in built.groups.values():
        assert all(p in modules for p in paths)


def test_group_membership_by_path_includes_downsample_convs():
    built = _build("maskrcnn", "resnet50")
    names = dict(built.module.named_parameters())
    where = {n: group_of(n, {g: built.groups[g] for g in partition_groups("maskrcnn")}) for n in names}
    assert where["backbone.body.layer1.0.downsample.0.weight"] == "base"
    assert where["backbone.body.layer2.0.downsample.0.weight"] == "base"
    assert where["backbone.body.layer3.0.downsample.0.weight"] == "base"  # base = conv1 … layer3 (DESIGN.md)
    assert where["backbone.body.layer4.0.downsample.0.weight"] == "top"
    assert where["backbone.body.conv1.weight"] == "base"
    assert where["roi_heads.box_head.fc6.weight"] == where["roi_heads.box_head.fc7.weight"] == "box_head"
    assert where["roi_heads.box_predictor.cls_score.weight"] == "box_predictor"
    assert where["roi_heads.mask_predictor.conv5_mask.weight"] == "mask_predictor"
    stem = [n for n in names if group_of(n, {"stem": built.groups["stem"]})]
    assert "backbone.body.conv1.weight" in stem and all(where[n] == "base" for n in stem)


def test_group_table_sums_to_the_network():
    cfg = Config(task="keypoints", model=ModelConfig(family="keypointrcnn", backbone="resnet18", width=0.25,
                                                     num_classes=4, detection=DetectionConfig(**TINY)))
    table, total, _ = group_table(cfg)
    rows = {r["group"]: r for r in table}
    part = partition_groups("keypointrcnn")
    assert sum(rows[g]["params"] for g in part) == total
    assert sum(rows[g]["percent"] for g in part) == pytest.approx(100.0)
    assert rows["stem"]["params"] < rows["base"]["params"]


def test_sizes_classes_and_options_reach_the_model():
    built = _build("keypointrcnn", cfg={"num_classes": 7}, keypoint_head_depth=3, num_keypoints=5)
    m = built.module
    assert m.roi_heads.box_predictor.cls_score.out_features == 7
    assert m.roi_heads.keypoint_predictor.kps_score_lowres.out_channels == 5
    assert sum(isinstance(x, nn.Conv2d) for x in m.roi_heads.keypoint_head) == 3
    assert m.backbone.out_channels == 16 and m.roi_heads.box_head.fc6.out_features == 32
    assert m.transform.min_size == (SIZE,)
    assert isinstance(m.backbone.body.bn1, nn.BatchNorm2d)  # from scratch: trainable BN
    assert _build("fasterrcnn").module.roi_heads.box_predictor.cls_score.out_features == DATA.num_classes
    frozen = _build("fasterrcnn", trainable_layers=3).module.backbone.body
    assert not frozen.conv1.weight.requires_grad and not frozen.layer1[0].conv1.weight.requires_grad
    assert frozen.layer2[0].conv1.weight.requires_grad


@pytest.mark.parametrize("bad,match", [
    ({"fpn_chanels": 8}, "fpn_channels"),
    ({"anchor_sizes": [8, 16]}, "anchor_sizes"),
    ({"norm": "group"}, "norm"),
    ({"cfg": {"num_classes": 1}}, "num_classes"),
])
def test_bad_options_name_the_key(bad, match):
    with pytest.raises(TicketlabError, match=match):
        _build("fasterrcnn", **bad)
    with pytest.raises(TicketlabError, match="model.backbone"):
        _build("fasterrcnn", backbone="resnet19")


def _weights_file(tmp_path, state) -> str:
    path = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return str(path)


@pytest.mark.parametrize("norm", ["batchnorm", "frozen"])
def test_model_weights_copy_the_trunk_and_drop_fc(tmp_path, norm):
    torch.manual_seed(5)
    state = torchvision_resnet(18, 0.25, num_classes=10).state_dict()
    built = _build("maskrcnn", norm=norm, cfg={"weights": _weights_file(tmp_path, state)})
    body = built.module.backbone.body.state_dict()
    for key, value in state.items():
        if key.startswith("fc.") or (norm == "frozen" and key.endswith("num_batches_tracked")):
            continue
        assert torch.equal(body[key], value), key
    dropped = 2 + (sum(k.endswith("num_batches_tracked") for k in state) if norm == "frozen" else 0)
    assert built.loaded["format"] == "resnet" and built.loaded["dropped"] == dropped
    assert built.loaded["matched"] == len([k for k in built.module.state_dict() if k.startswith("backbone.body.")])


def test_model_weights_of_the_wrong_width_or_no_resnet_are_rejected(tmp_path):
    with pytest.raises(TicketlabError, match="layer|conv1"):
        _build("fasterrcnn", cfg={"weights": _weights_file(tmp_path, torchvision_resnet(18, 0.5).state_dict())})
    with pytest.raises(TicketlabError, match="does not fit the model .*unexpected: features.0.weight"):
        _build("fasterrcnn", cfg={"weights": _weights_file(tmp_path, {"features.0.weight": torch.zeros(3)})})


def test_model_weights_file_initialises_the_trunk_with_frozen_norms(tmp_path):
    torch.manual_seed(7)
    state = torchvision_resnet(18, 0.25).state_dict()
    path = tmp_path / "r18.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    built = _build("fasterrcnn", cfg={"weights": str(path)})
    body = built.module.backbone.body
    assert isinstance(body.bn1, FrozenBatchNorm2d)
    assert torch.equal(body.layer4[1].conv2.weight, state["layer4.1.conv2.weight"])
    assert torch.equal(body.bn1.running_var, state["bn1.running_var"])


def test_options_come_from_the_config_section():
    cfg = ModelConfig(family="fasterrcnn", backbone="resnet18", width=0.25,
                      detection=DetectionConfig(fpn_channels=24, box_representation_size=48))
    built = build_model(cfg, DATA)
    assert built.module.backbone.out_channels == 24
    assert built.module.roi_heads.box_head.fc7.out_features == 48
