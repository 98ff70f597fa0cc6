"""SSD on a ResNet (torchvision's SSD class): feature maps, default boxes, interface, groups."""

import pytest
import torch

from ticketlab.config import ModelConfig, SSDConfig
from ticketlab.data.bundle import DataBundle
from ticketlab.errors import TicketlabError
from ticketlab.models import build_model
from ticketlab.models.ssd import halvings, ssd_aspect_ratios
from ticketlab.sparsity.scope import resolve_scope


def _data(num_classes=4, size=64):
    return DataBundle(train=[], val=[], num_classes=num_classes, in_channels=3, image_size=size)


def _lite(**ssd):
    return ModelConfig(family="ssd", backbone="resnet50", width=0.125, ssd=SSDConfig(**{"extra_channels": [32, 16, 16], **ssd}))


def test_ssd300_geometry_gives_ssd300s_six_maps():
    # 300 px: layer2..4 at 38, 19, 10, then extra blocks to 5, 3, 1 (VGG-SSD300's sizes)
    built = build_model(_lite(input_size=300), _data())
    feats = built.module.eval().backbone(torch.zeros(1, 3, 300, 300))
    assert [f.shape[-1] for f in feats.values()] == [38, 19, 10, 5, 3, 1]
    assert [f.shape[1] for f in feats.values()] == built.module.backbone.out_channels
    assert ssd_aspect_ratios(6) == [[2], [2, 3], [2, 3], [2, 3], [2], [2]]
    assert halvings(300, 3) == 38


def test_small_inputs_stop_the_extra_blocks_at_one_pixel():
    built = build_model(_lite(), _data(size=64))  # layer4 at 2×2 → one extra block
    feats = built.module.eval().backbone(torch.zeros(1, 3, 64, 64))
    assert [f.shape[-1] for f in feats.values()] == [8, 4, 2, 1]


def test_train_and_eval_follow_torchvisions_interface():
    torch.manual_seed(0)
    model = build_model(_lite(score_thresh=0.0), _data()).module
    images = [torch.rand(3, 60, 64), torch.rand(3, 64, 50)]
    targets = [{"boxes": torch.tensor([[4.0, 5.0, 30.0, 40.0]]), "labels": torch.tensor([1])},
               {"boxes": torch.tensor([[1.0, 2.0, 20.0, 20.0]]), "labels": torch.tensor([3])}]
    model.train()
    terms = model(images, targets)
    assert set(terms) == {"bbox_regression", "classification"} and all(torch.isfinite(v) for v in terms.values())
    model.eval()
    with torch.no_grad():
        out = model(images)
    assert len(out) == 2 and len(out[0]["boxes"]) > 0 and out[0]["labels"].min() >= 1


def test_default_scope_keeps_stem_extra_blocks_and_heads_dense():
    built = build_model(_lite(), _data())
    scope = resolve_scope(built.module, built.groups, built.default_scope)
    assert scope and all(n.startswith("backbone.body.layer") for n in scope)
    names = [n for n, _ in built.module.named_parameters()]
    assert any(n.startswith("backbone.extra.") for n in names) and any(n.startswith("head.") for n in names)


def test_wrong_number_of_scales_names_the_key():
    with pytest.raises(TicketlabError, match="model.ssd.scales"):
        build_model(_lite(scales=[0.1, 0.2]), _data())
