"""YOLOv4 on a ResNet: box coding, assignment, CIoU loss, the torchvision detector interface, groups."""

import math

import pytest
import torch
from torchvision.ops import complete_box_iou_loss

from ticketlab.config import ModelConfig, YoloConfig
from ticketlab.data.bundle import DataBundle
from ticketlab.errors import TicketlabError
from ticketlab.models import build_model
from ticketlab.models.yolo_boxes import YoloBoxCoder, cell_grid, default_anchors
from ticketlab.models.yolo_loss import YoloLoss, assign
from ticketlab.sparsity.scope import resolve_scope
from ticketlab.tasks.rcnn_val_loss import rcnn_loss_terms


def _data(num_classes=4, size=64):
    return DataBundle(train=[], val=[], num_classes=num_classes, in_channels=3, image_size=size)


def _lite(**yolo):
    return ModelConfig(family="yolov4", backbone="resnet50", width=0.125,
                       yolo=YoloConfig(neck_channels=16, **yolo))


@pytest.mark.parametrize("scale_xy", [1.0, 1.2])
def test_encode_and_decode_invert_each_other(scale_xy):
    coder = YoloBoxCoder(stride=16, scale_xy=scale_xy)
    g = torch.Generator().manual_seed(0)
    cells = torch.randint(0, 8, (50, 2), generator=g).float()
    anchors = torch.rand(50, 2, generator=g) * 60 + 4
    raw = torch.randn(50, 4, generator=g) * 1.5
    boxes = coder.decode(raw, cells, anchors)
    assert torch.allclose(coder.encode(boxes, cells, anchors), raw, atol=1e-4)
    assert torch.allclose(coder.decode(coder.encode(boxes, cells, anchors), cells, anchors), boxes, atol=1e-4)
    # the decoded centre lies in the cell's reach: [−(k−1)/2, 1 + (k−1)/2] cells around it
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2 / 16 - cells
    assert (centre >= -(scale_xy - 1) / 2).all() and (centre <= 1 + (scale_xy - 1) / 2).all()


def test_ciou_loss_matches_a_hand_computed_case():
    a, b = torch.tensor([[0.0, 0.0, 2.0, 2.0]]), torch.tensor([[1.0, 1.0, 4.0, 3.0]])
    iou = 1 / 9                      # overlap 1×1, areas 4 and 6
    rho2, c2 = 1.5**2 + 1.0**2, 4**2 + 3**2  # centres (1, 1) vs (2.5, 2); enclosing box 4×3
    v = 4 / math.pi**2 * (math.atan(3 / 2) - math.atan(2 / 2)) ** 2
    alpha = v / (1 - iou + v)
    expected = 1 - (iou - rho2 / c2 - alpha * v)
    assert float(complete_box_iou_loss(a, b)) == pytest.approx(expected, rel=1e-5)
    assert float(complete_box_iou_loss(a, a)) == pytest.approx(0.0, abs=1e-6)


def test_assignment_uses_the_centre_cell_and_every_anchor_above_the_threshold():
    anchors = default_anchors(64)
    box = torch.tensor([[20.0, 4.0, 30.0, 18.0]])  # 10×14 px, centre (25, 11)
    target = [{"boxes": box, "labels": torch.tensor([2])}]
    shapes = [(8, 8), (4, 4), (2, 2)]
    strict = assign(target, anchors, (8, 16, 32), shapes, iou_thresh=1.0)  # best anchor only
    hits = [(lvl, int(a.anchor[0]), int(a.row[0]), int(a.col[0])) for lvl, a in enumerate(strict) if len(a.boxes)]
    assert len(hits) == 1
    lvl, _, row, col = hits[0]
    assert (row, col) == (int(11 // (8 * 2**lvl)), int(25 // (8 * 2**lvl)))
    loose = assign(target, anchors, (8, 16, 32), shapes, iou_thresh=0.0)  # every anchor overlaps
    assert sum(len(a.boxes) for a in loose) == 9


def _perfect_outputs(loss, targets, anchors, shapes, num_classes, big=30.0):
    """Head outputs that predict every assigned box exactly, objectness and class saturated."""
    outs = [torch.full((len(targets), 3, h, w, 5 + num_classes), -big) for h, w in shapes]
    for out, coder, level_anchors, pos in zip(outs, loss.coders, anchors,
                                               assign(targets, anchors, [c.stride for c in loss.coders], shapes,
                                                      loss.cfg.anchor_iou_thresh)):
        where = (pos.image, pos.anchor, pos.row, pos.col)
        cells = torch.stack((pos.col, pos.row), dim=1).float()
        out[where + (slice(0, 4),)] = coder.encode(pos.boxes, cells, level_anchors[pos.anchor])
        out[where + (4,)] = big
        out[where + (5 + pos.labels - 1,)] = big
    return outs


def test_a_perfect_prediction_gives_zero_loss_and_a_wrong_one_does_not():
    cfg = YoloConfig()
    loss = YoloLoss(cfg, 3, [YoloBoxCoder(s, k) for s, k in zip((8, 16, 32), cfg.scale_xy)])
    anchors = default_anchors(128)
    targets = [{"boxes": torch.tensor([[10.0, 12.0, 40.0, 30.0], [60.0, 50.0, 120.0, 126.0]]),
                "labels": torch.tensor([1, 3])},
               {"boxes": torch.tensor([[5.0, 70.0, 15.0, 90.0]]), "labels": torch.tensor([2])}]
    shapes = [(16, 16), (8, 8), (4, 4)]
    outs = _perfect_outputs(loss, targets, anchors, shapes, 3)
    terms = loss(outs, targets, anchors)
    assert float(terms["loss_box"]) == pytest.approx(0.0, abs=1e-4)
    assert float(terms["loss_obj"]) < 1e-6 and float(terms["loss_cls"]) < 1e-6
    outs[0][..., 2:4] += 0.5  # every box 65% too large
    outs[1][..., 2:4] += 0.5
    outs[2][..., 2:4] += 0.5
    assert float(loss(outs, targets, anchors)["loss_box"]) > 0.01


def test_train_mode_gives_loss_terms_and_eval_mode_torchvision_detections():
    torch.manual_seed(0)
    built = build_model(_lite(score_thresh=0.0), _data())
    model = built.module
    images = [torch.rand(3, 48, 64), torch.rand(3, 64, 40)]
    targets = [{"boxes": torch.tensor([[4.0, 5.0, 30.0, 40.0]]), "labels": torch.tensor([1])},
               {"boxes": torch.tensor([[1.0, 2.0, 20.0, 20.0], [10.0, 30.0, 35.0, 60.0]]), "labels": torch.tensor([3, 2])}]
    model.train()
    terms = model(images, targets)
    assert set(terms) == {"loss_box", "loss_obj", "loss_cls"} and all(torch.isfinite(v) for v in terms.values())
    sum(terms.values()).backward()
    assert model.head[0][1].weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        out = model(images)
    assert len(out) == 2 and set(out[0]) == {"boxes", "labels", "scores"}
    for det, img in zip(out, images):
        assert 0 < len(det["boxes"]) <= 100
        assert det["labels"].min() >= 1 and det["labels"].max() <= 3  # 0 stays the background
        assert (det["boxes"][:, 2] <= img.shape[-1] + 1e-4).all() and (det["boxes"][:, 3] <= img.shape[-2] + 1e-4).all()
        assert (det["scores"][:-1] >= det["scores"][1:]).all()


def test_default_scope_prunes_the_resnet_stages_only():
    built = build_model(_lite(), _data())
    scope = resolve_scope(built.module, built.groups, built.default_scope)
    assert scope and all(n.startswith(tuple(f"backbone.body.layer{i}." for i in range(1, 5))) for n in scope)
    assert not any(n.startswith(("backbone.body.conv1", "neck.", "head.")) for n in scope)
    assert any(".downsample." in n for n in scope)
    assert {"stem", "layer1", "layer4", "base", "top", "neck", "head"} <= set(built.groups)


@pytest.mark.parametrize("key,value,match", [
    ("input_size", 100, "model.yolo.input_size"),
    ("anchors", [[10, 10]] * 4, "model.yolo.anchors"),
    ("scale_xy", [1.0, 1.0], "model.yolo.scale_xy"),
])
def test_bad_sizes_are_one_line_errors(key, value, match):
    with pytest.raises(TicketlabError, match=match):
        build_model(_lite(**{key: value}), _data())


def test_cell_grid_is_column_then_row():
    g = cell_grid(2, 3, torch.device("cpu"), torch.float32)
    assert g.shape == (2, 3, 2) and g[1, 2].tolist() == [2.0, 1.0]


def test_groupnorm_neck_trains_and_evaluates_alike_where_batchnorm_does_not():
    """neck_norm: groupnorm swaps every neck/head BatchNorm for GroupNorm (same parameter names, so
    checkpoints and masks map), and its loss no longer depends on train vs eval mode: what made
    BatchNorm's eval-mode scores part from training's on 96-px scenes (docs/detection002.md)."""
    images = [torch.rand(3, 64, 64), torch.rand(3, 64, 64)]
    targets = [{"boxes": torch.tensor([[4.0, 5.0, 30.0, 40.0]]), "labels": torch.tensor([1])},
               {"boxes": torch.tensor([[10.0, 30.0, 35.0, 60.0]]), "labels": torch.tensor([2])}]
    gaps, names = {}, {}
    for norm in ("batchnorm", "groupnorm"):
        torch.manual_seed(0)
        model = build_model(_lite(norm="frozen", neck_norm=norm), _data()).module  # trunk: as pretrained
        norms = [m for n, m in model.named_modules() if n.startswith(("neck.", "head.")) and
                 isinstance(m, (torch.nn.BatchNorm2d, torch.nn.GroupNorm))]
        assert norms and all(isinstance(m, torch.nn.GroupNorm if norm == "groupnorm" else torch.nn.BatchNorm2d)
                             for m in norms)
        if norm == "groupnorm":
            assert all(m.num_channels // m.num_groups <= 16 for m in norms)
        names[norm] = {n for n, _ in model.named_parameters()}
        model.train()
        with torch.no_grad():
            train_loss = float(sum(model(images, targets).values()))
        gaps[norm] = abs(rcnn_loss_terms(model, images, targets)["loss"] - train_loss)
    assert names["batchnorm"] == names["groupnorm"]
    assert gaps["groupnorm"] < 1e-4 < gaps["batchnorm"]
