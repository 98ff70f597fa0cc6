"""Pretrained ResNets in the layouts people have (torchvision, MoCo v2, SimCLR) fill any model's ResNet."""

import pytest
import torch
from safetensors.torch import save_file
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.segmentation.deeplabv3 import DeepLabHead, DeepLabV3

from ticketlab.config import ModelConfig
from ticketlab.data.bundle import DataBundle
from ticketlab.errors import TicketlabError
from ticketlab.models import build_model
from ticketlab.models.resnet import torchvision_resnet
from ticketlab.models.resnet_keys import load_model_weights, resnet_prefixes

WIDTH = 0.25  # ResNet-50's blocks and key layout at a quarter of its channels, to stay fast
DATA = DataBundle(train=[], val=[], num_classes=3, in_channels=3, image_size=64)


def resnet_state(depth, seed):
    torch.manual_seed(seed)
    model = torchvision_resnet(depth, WIDTH)
    for m in model.modules():  # non-trivial norm statistics, so a skipped buffer would show
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
            m.num_batches_tracked.fill_(seed + 7)
    return model.state_dict()


def moco_v2_checkpoint(depth=50):
    """The layout of MoCo v2's `checkpoint_0199.pth.tar`: a DDP `module.` prefix, the query encoder
    `encoder_q` with an MLP head `fc.0`/`fc.2`, the momentum encoder `encoder_k`, the queue."""
    q, k = resnet_state(depth, 1), resnet_state(depth, 2)
    dim = q["fc.weight"].shape[1]
    state = {}
    for name, enc in (("encoder_q", q), ("encoder_k", k)):
        state.update({f"module.{name}.{key}": v for key, v in enc.items() if not key.startswith("fc.")})
        state.update({f"module.{name}.fc.0.weight": torch.randn(dim, dim), f"module.{name}.fc.0.bias": torch.randn(dim),
                      f"module.{name}.fc.2.weight": torch.randn(128, dim), f"module.{name}.fc.2.bias": torch.randn(128)})
    state["module.queue"] = torch.randn(128, 4096)
    state["module.queue_ptr"] = torch.zeros(1, dtype=torch.long)
    ckpt = {"epoch": 200, "arch": f"resnet{depth}", "state_dict": state,
            "optimizer": {"state": {}, "param_groups": [{"lr": 0.03, "momentum": 0.9, "params": [0, 1]}]}}
    return ckpt, q


def simclr_checkpoint(prefix):
    """SimCLR converted to PyTorch: the ResNet under `encoder.` (or `backbone.`), fc replaced by an
    identity (no keys), a two-layer projection head beside it."""
    enc = resnet_state(50, 3)
    dim = enc["fc.weight"].shape[1]
    state = {f"{prefix}{k}": v for k, v in enc.items() if not k.startswith("fc.")}
    state.update({"projector.0.weight": torch.randn(dim, dim), "projector.2.weight": torch.randn(64, dim)})
    return state, enc


def assert_trunk_equal(model_state, prefix, expected):
    trunk = [k for k in model_state if k.startswith(prefix)]
    assert trunk
    for key in trunk:
        assert torch.equal(model_state[key], expected[key[len(prefix):]]), key


def detector():
    torch.manual_seed(0)
    return build_model(ModelConfig(family="fasterrcnn", backbone="resnet50", width=WIDTH), DATA).module


def test_moco_v2_checkpoint_fills_a_resnet50_detector_backbone(tmp_path):
    ckpt, query = moco_v2_checkpoint()
    path = tmp_path / "checkpoint_0199.pth.tar.pth"
    torch.save(ckpt, path)
    model = detector()
    report = load_model_weights(model, path)
    state = model.state_dict()
    assert_trunk_equal(state, "backbone.body.", query)  # the query encoder, not encoder_k
    assert report["source_prefix"] == "encoder_q." and report["target_prefix"] == "backbone.body."
    assert report["matched"] == len([k for k in state if k.startswith("backbone.body.")])
    n_ckpt = len(ckpt["state_dict"])
    assert report["matched"] + report["dropped"] == n_ckpt  # everything accounted for


@pytest.mark.parametrize("prefix", ["encoder.", "backbone."])
def test_simclr_checkpoint_fills_a_resnet50_detector_backbone(tmp_path, prefix):
    state, enc = simclr_checkpoint(prefix)
    path = tmp_path / "simclr.safetensors"
    save_file(state, str(path))
    model = detector()
    report = load_model_weights(model, path)
    assert_trunk_equal(model.state_dict(), "backbone.body.", enc)
    assert report["source_prefix"] == prefix


def test_moco_checkpoint_into_a_classifier_and_a_deeplabv3(tmp_path):
    ckpt, query = moco_v2_checkpoint()
    path = tmp_path / "moco.pth"
    torch.save(ckpt, path)
    torch.manual_seed(0)
    classifier = build_model(ModelConfig(family="resnet50", width=WIDTH, weights=str(path)), DATA)
    state = classifier.module.state_dict()
    for key in state:
        if not key.startswith("fc."):
            assert torch.equal(state[key], query[key]), key
    assert classifier.loaded["dropped"] > 0 and classifier.loaded["target_prefix"] == ""

    trunk = torchvision_resnet(50, WIDTH)
    seg = DeepLabV3(IntermediateLayerGetter(trunk, {"layer4": "out"}), DeepLabHead(trunk.fc.in_features, 3))
    assert resnet_prefixes(seg.state_dict()) == ["backbone."]
    load_model_weights(seg, path)
    assert_trunk_equal(seg.state_dict(), "backbone.", query)


def test_wrong_architecture_lists_the_mismatched_keys(tmp_path):
    ckpt, _ = moco_v2_checkpoint(depth=18)
    path = tmp_path / "moco_r18.pth"
    torch.save(ckpt, path)
    with pytest.raises(TicketlabError) as info:
        load_model_weights(detector(), path)
    msg = str(info.value)
    assert "\n" not in msg and str(path) in msg
    assert "missing" in msg and "layer1.0.conv3.weight" in msg   # ResNet-50 has conv3, ResNet-18 not
    assert "of another shape" in msg and "layer1.0.conv1.weight" in msg


def test_two_online_encoders_need_a_prefix(tmp_path):
    enc = resnet_state(18, 1)
    state = {f"{p}.{k}": v.clone() for p in ("student", "online") for k, v in enc.items()}
    path = tmp_path / "two.safetensors"
    save_file(state, str(path))
    model = torchvision_resnet(18, WIDTH)
    with pytest.raises(TicketlabError, match="2 ResNets.*model.weights_prefix"):
        load_model_weights(model, path)
    report = load_model_weights(model, path, prefix="online")
    assert report["source_prefix"] == "online."
    assert torch.equal(model.state_dict()["layer4.1.conv2.weight"], enc["layer4.1.conv2.weight"])
