"""The C4 Faster R-CNN (paper 001's VOC model): Table 3's module shares, its structure, the trunk
mapping of ResNet checkpoints, and the validation loss that leaves the model untouched."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision

from ticketlab.config import DetectionConfig, ModelConfig, load_config
from ticketlab.data.bundle import DataBundle
from ticketlab.errors import TicketlabError
from ticketlab.lottery.info import group_table
from ticketlab.models import build_model
from ticketlab.sparsity.scope import group_of
from ticketlab.tasks.rcnn_val_loss import loss_mode, rcnn_loss_terms

# paper 001 Table 3, "Param %" of each module on the ResNet-18 Faster R-CNN
TABLE3 = {"base": 21.93, "top": 66.39, "rpn": 9.71, "box_predictor": 0.65}
PARTITION = ("base", "top", "rpn", "box_predictor")


def _data(size=96):
    return DataBundle(train=[], val=[], num_classes=4, in_channels=3, image_size=size)


def _c4(backbone="resnet18", width=0.25, family="fasterrcnn", weights=None, **opts):
    sizes = dict(layout="c4", rpn_channels=32, anchor_sizes=[16, 32, 64], box_batch_size_per_image=16,
                 box_score_thresh=0.0)
    cfg = ModelConfig(family=family, backbone=backbone, width=width, weights=weights,
                      detection=DetectionConfig(**{**sizes, **opts}))
    return build_model(cfg, _data())


def test_voc_config_prints_table3_shares():
    rows, total, scope = group_table(load_config("configs/voc07_fasterrcnn_r18.yaml"))
    share = {r["group"]: r["prunable %"] for r in rows}
    for group, paper in TABLE3.items():
        assert share[group] == pytest.approx(paper, abs=0.5), group
    assert 100 * scope / total == pytest.approx(88.32, abs=0.5)  # Base + Top, "88% of the network" (§4.3)


@pytest.mark.parametrize("backbone", ["resnet18", "resnet50"])
def test_groups_partition_the_network_and_follow_the_layout(backbone):
    built = _c4(backbone)
    model = built.module
    groups = {g: built.groups[g] for g in PARTITION}
    owner = {n: group_of(n, groups) for n, _ in model.named_parameters()}
    assert None not in owner.values()  # every parameter in exactly one of the four
    assert {n for n, g in owner.items() if g == "top"} == {n for n, _ in model.named_parameters()
                                                            if n.startswith("backbone.body.layer4.")}
    # the stride-16 layer3 map feeds RPN and RoIAlign; layer4 runs on the pooled RoIs only
    feats = model.backbone(torch.zeros(1, 3, 96, 96))
    assert list(feats) == ["0"] and feats["0"].shape[-1] == 96 // 16
    assert feats["0"].shape[1] == model.backbone.out_channels
    pooled = torch.zeros(5, model.backbone.out_channels, 14, 14)
    assert model.roi_heads.box_head(pooled).shape == (5, model.roi_heads.box_predictor.cls_score.in_features)
    assert not list(model.roi_heads.box_head.parameters())  # layer4 has one name: backbone.body.layer4
    model.eval()
    out = model([torch.rand(3, 96, 80)])
    assert set(out[0]) == {"boxes", "labels", "scores"}


def test_shortcut_and_stem_are_nested_groups():
    built = _c4()
    names = [n for n, _ in built.module.named_parameters()]
    shortcut = [n for n in names if group_of(n, {"shortcut": built.groups["shortcut"]})]
    assert shortcut and all(".downsample." in n for n in shortcut)
    assert {n.split(".")[2] for n in shortcut} == {"layer2", "layer3", "layer4"}


def test_c4_is_for_faster_rcnn_only():
    with pytest.raises(TicketlabError, match="layout: c4 is built for fasterrcnn"):
        _c4(family="maskrcnn")


def test_torchvision_resnet_checkpoint_fills_the_whole_trunk(tmp_path):
    torch.manual_seed(0)
    resnet = torchvision.models.resnet18()
    path = tmp_path / "r18.pth"
    torch.save(resnet.state_dict(), path)
    built = _c4(width=1.0, weights=str(path))
    assert built.loaded["format"] == "resnet"
    # nothing dropped but the classifier and FrozenBatchNorm's counters
    assert built.loaded["dropped"] == 2 + sum(k.endswith("num_batches_tracked") for k in resnet.state_dict())
    own = built.module.state_dict()
    for key in ("layer4.1.conv2.weight", "layer3.0.downsample.0.weight", "conv1.weight"):
        assert torch.equal(own[f"backbone.body.{key}"], resnet.state_dict()[key])


def _targets():
    return [{"boxes": torch.tensor([[10.0, 12.0, 50.0, 60.0]]), "labels": torch.tensor([1])},
            {"boxes": torch.tensor([[5.0, 5.0, 30.0, 40.0], [40.0, 30.0, 90.0, 80.0]]),
             "labels": torch.tensor([2, 3])}]


def test_validation_loss_changes_nothing_and_repeats():
    torch.manual_seed(0)
    built = _c4(width=0.25, norm="batchnorm")
    model = built.module.eval()
    images = [torch.rand(3, 96, 96), torch.rand(3, 96, 96)]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    a = rcnn_loss_terms(model, images, _targets())
    b = rcnn_loss_terms(model, images, _targets())
    assert a == b and a["loss"] == pytest.approx(sum(v for k, v in a.items() if k != "loss"))
    assert {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"} <= set(a)
    assert torch.equal(torch.get_rng_state(), rng)  # training's random stream is untouched
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # incl. BN running stats and counters
    assert not model.training and not any(m.training for m in model.modules())
    # inside loss_mode the heads are in train mode, every BatchNorm in eval mode
    with loss_mode(model):
        norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        assert model.training and norms and not any(m.training for m in norms)


def test_table3_preset_on_c4_prunes_box_predictor_as_the_box_cls_head(tmp_path):
    import yaml

    from ticketlab.lottery.study import load_study

    spec = tmp_path / "t3.yaml"
    spec.write_text(yaml.safe_dump({"config": str(Path("configs/voc07_fasterrcnn_r18.yaml").resolve()),
                                    "preset": "module_groups"}))
    scopes = []
    for cell in load_study(spec).cells():
        sets = dict(o.split("=", 1) for o in cell.overrides)
        scopes.append(frozenset(yaml.safe_load(sets["prune.scope"]) or []))
    assert len(set(scopes)) == 16 and max(scopes, key=len) == set(PARTITION)
