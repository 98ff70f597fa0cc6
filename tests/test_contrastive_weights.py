"""Whole pre-training checkpoints: SimCLR and MoCo v2 files in their common layouts load projection
MLP, key encoder and queue (not just the ResNet); an RGB conv1 fills a 1-channel model as its sum."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from test_data_idx import real_fashion_mnist
from test_resnet_keys import WIDTH, moco_v2_checkpoint, resnet_state, simclr_checkpoint
from ticketlab.config import Config, ModelConfig, SSLConfig, load_config
from ticketlab.data.bundle import DataBundle
from ticketlab.errors import TicketlabError
from ticketlab.lottery.experiment import build_experiment
from ticketlab.lottery.imp import run_imp
from ticketlab.models import build_model
from ticketlab.models.cifar_resnet import CifarResNet
from ticketlab.models.resnet import torchvision_resnet
from ticketlab.tasks import build_task_model

RGB = DataBundle(train=[], val=[], num_classes=3, in_channels=3, image_size=64)
GRAY = DataBundle(train=[], val=[], num_classes=3, in_channels=1, image_size=64)


def contrastive(task, path, data=RGB, seed=0, **ssl):
    torch.manual_seed(seed)
    model = ModelConfig(family="resnet50", width=WIDTH, weights=str(path) if path else None)
    return build_task_model(Config(task=task, model=model, ssl=SSLConfig(**ssl)), data)


def under(state, prefix):
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def assert_same(got, expected, skip=("fc.",)):
    keys = [k for k in expected if not k.startswith(skip)]
    assert keys
    for k in keys:
        assert torch.equal(got[k], expected[k]), k


def test_moco_v2_checkpoint_loads_whole(tmp_path):
    ckpt, query = moco_v2_checkpoint()
    path = tmp_path / "moco_v2_800ep.pth.tar.pth"
    torch.save(ckpt, path)
    built = contrastive("moco", path, projection_dim=128, moco_queue=4096)
    state, file = built.module.state_dict(), ckpt["state_dict"]
    assert_same(under(state, "backbone."), query)
    key_trunk = under(file, "module.encoder_k.")
    assert_same(under(state, "key_encoder.backbone."), key_trunk)
    assert not torch.equal(state["key_encoder.backbone.layer1.0.conv1.weight"], state["backbone.layer1.0.conv1.weight"])
    for side, own in (("encoder_q", "projection"), ("encoder_k", "key_encoder.projection")):
        for layer in ("0.weight", "0.bias", "2.weight", "2.bias"):
            assert torch.equal(state[f"{own}.{layer}"], file[f"module.{side}.fc.{layer}"]), (own, layer)
    assert torch.equal(state["queue"], file["module.queue"].T)  # MoCo keeps keys as columns
    rec = built.loaded
    assert rec["projection"] == {"from": "encoder_q.fc.", "layers": 2}
    assert rec["key_encoder"]["from"] == "encoder_k." and rec["key_encoder"]["projection_from"] == "encoder_k.fc."
    assert rec["queue"]["from"] == "queue" and "columns" in rec["queue"]["layout"]
    assert rec["dropped"] == 0  # every tensor of the file is in the model


@pytest.mark.parametrize("prefix", ["encoder.", "backbone."])
def test_simclr_checkpoint_loads_its_projector(tmp_path, prefix):
    file, enc = simclr_checkpoint(prefix)  # projector.0 / projector.2 without biases
    path = tmp_path / "simclr.safetensors"
    save_file(file, str(path))
    built = contrastive("simclr", path, projection_dim=64)
    state = built.module.state_dict()
    assert_same(under(state, "backbone."), enc)
    assert torch.equal(state["projection.0.weight"], file["projector.0.weight"])
    assert torch.equal(state["projection.2.weight"], file["projector.2.weight"])
    assert not state["projection.0.bias"].any() and not state["projection.2.bias"].any()  # same map as no bias
    assert built.loaded["projection"]["bias_zero"] == ["projection.0.bias", "projection.2.bias"]
    assert built.loaded["dropped"] == 0

    moco = contrastive("moco", path, projection_dim=64, moco_queue=32)  # a SimCLR file starts a MoCo run
    state = moco.module.state_dict()
    assert moco.loaded["key_encoder"].startswith("copy") and moco.loaded["queue"].startswith("fresh")
    for k, v in state.items():
        if k.startswith("key_encoder."):
            assert torch.equal(v, state[k[len("key_encoder."):]]), k


def test_ticketlab_moco_weights_round_trip_whole(tmp_path):
    source = contrastive("moco", None, seed=3, projection_dim=16, moco_queue=8).module
    with torch.no_grad():
        for p in source.key_encoder.parameters():
            p.add_(torch.randn_like(p))
        source.enqueue(torch.nn.functional.normalize(torch.randn(3, 16), dim=1))
    path = tmp_path / "final.safetensors"
    save_file(source.state_dict(), str(path))
    loaded = contrastive("moco", path, projection_dim=16, moco_queue=8)
    got = loaded.module.state_dict()
    assert all(torch.equal(got[k], v) for k, v in source.state_dict().items())
    assert loaded.loaded["key_encoder"]["from"] == "key_encoder.backbone."
    assert loaded.loaded["queue"]["ptr"] == 3


def test_a_projection_that_does_not_fit_is_one_clear_error(tmp_path):
    ckpt, _ = moco_v2_checkpoint()
    path = tmp_path / "moco.pth"
    torch.save(ckpt, path)
    with pytest.raises(TicketlabError) as info:
        contrastive("simclr", path, projection_dim=32)
    msg = str(info.value)
    assert "\n" not in msg and "encoder_q.fc." in msg and "ssl.projection_dim" in msg and "512→512→128" in msg
    with pytest.raises(TicketlabError, match="moco_queue=100"):
        contrastive("moco", path, projection_dim=128, moco_queue=100)

    file, _ = simclr_checkpoint("encoder.")  # a head with BatchNorm (solo-learn's SimCLR projector)
    file.update({"projector.1.weight": torch.ones(512), "projector.1.running_mean": torch.zeros(512)})
    bn = tmp_path / "bn.safetensors"
    save_file(file, str(bn))
    with pytest.raises(TicketlabError, match="other than Linear.*projector.1.weight"):
        contrastive("simclr", bn, projection_dim=64)


@pytest.mark.parametrize("layout", ["torchvision", "moco_v2"])
def test_rgb_conv1_fills_a_one_channel_model_as_its_sum(tmp_path, layout):
    if layout == "torchvision":
        file = resnet_state(50, 5)
        rgb = file["conv1.weight"]
    else:
        ckpt, query = moco_v2_checkpoint()
        file, rgb = ckpt, query["conv1.weight"]
    path = tmp_path / "rgb.pth"
    torch.save(file, path)
    torch.manual_seed(0)
    built = build_model(ModelConfig(family="resnet50", width=WIDTH, weights=str(path)), GRAY)
    conv1 = built.module.state_dict()["conv1.weight"]
    assert conv1.shape[1] == 1 and rgb.shape[1] == 3
    assert torch.allclose(conv1, rgb.sum(dim=1, keepdim=True))
    assert list(built.loaded["adapted"]) == ["conv1.weight"]
    # exact: the 1-channel model on x is the RGB model on x copied into three channels
    x = torch.randn(2, 1, 32, 32)
    rgb_conv = torch.nn.functional.conv2d(x.expand(-1, 3, -1, -1), rgb, stride=2, padding=3)
    assert torch.allclose(built.module.conv1(x), rgb_conv, atol=1e-5)


def test_fashion_mnist_config_starts_from_an_rgb_resnet50(tmp_path):
    root = real_fashion_mnist()  # Debian's Fashion-MNIST files
    torch.manual_seed(1)
    imagenet = torchvision_resnet(50, 1.0).state_dict()  # the stock 3-channel torchvision ResNet-50
    weights = tmp_path / "resnet50.safetensors"
    save_file(imagenet, str(weights))
    cfg = load_config("configs/fashion_mnist_resnet50_pretrained.yaml",
                      [f"data.root={root}", f"model.weights={weights}", "data.num_workers=0",
                       "train.device=cpu"])
    exp = build_experiment(cfg)
    state = exp.model.state_dict()
    assert torch.allclose(state["conv1.weight"], imagenet["conv1.weight"].sum(dim=1, keepdim=True))
    assert_same(state, {k: v for k, v in imagenet.items() if k != "conv1.weight"})
    assert exp.built.loaded["adapted"] == {"conv1.weight": "summed over 3 input channels (RGB) into 1"}


def test_moco_imp_starts_from_the_whole_checkpoint(tmp_path):
    """digits_moco (1-channel CIFAR ResNet-20 ×0.5) from an RGB MoCo v2-layout checkpoint: init.json says
    what loaded, and level 0 starts from the file's projection, key encoder and queue."""
    torch.manual_seed(7)
    encoders = {n: CifarResNet(20, 0.5, num_classes=10, in_channels=3).state_dict() for n in ("encoder_q", "encoder_k")}
    file = {}
    for name, enc in encoders.items():
        file.update({f"module.{name}.{k}": v for k, v in enc.items() if not k.startswith("fc.")})
        file.update({f"module.{name}.fc.0.weight": torch.randn(32, 32), f"module.{name}.fc.0.bias": torch.randn(32),
                     f"module.{name}.fc.2.weight": torch.randn(64, 32), f"module.{name}.fc.2.bias": torch.randn(64)})
    file["module.queue"] = torch.nn.functional.normalize(torch.randn(64, 256), dim=0)
    file["module.queue_ptr"] = torch.tensor([5])
    path = tmp_path / "moco_digits.pth"
    torch.save({"state_dict": file}, path)
    cfg = load_config("configs/digits_moco.yaml", [f"model.weights={path}", "ssl.moco_queue=256", "prune.levels=0",
                                                   "train.duration=1ep", "train.eval_every=1ep",
                                                   "train.checkpoint_every=1ep", "prune.rewind=pretrained"])
    run_imp(cfg, tmp_path / "run", log=lambda s: None)
    record = json.loads((tmp_path / "run" / "init.json").read_text())["weights"]
    assert record["projection"]["from"] == "encoder_q.fc." and record["key_encoder"]["from"] == "encoder_k."
    assert record["queue"]["ptr"] == 5 and record["dropped"] == 0
    assert list(record["adapted"]) == ["conv1.weight"]
    start = load_file(str(tmp_path / "run" / "level_00" / "rewind.safetensors"))  # every level restarts here
    assert torch.equal(start["projection.0.weight"], file["module.encoder_q.fc.0.weight"])
    assert torch.equal(start["key_encoder.projection.2.bias"], file["module.encoder_k.fc.2.bias"])
    assert torch.equal(start["key_encoder.backbone.layer2.0.conv1.weight"],
                       file["module.encoder_k.layer2.0.conv1.weight"])
    assert torch.equal(start["queue"], file["module.queue"].T) and int(start["queue_ptr"]) == 5
    assert torch.allclose(start["backbone.conv1.weight"], file["module.encoder_q.conv1.weight"].sum(1, keepdim=True))
    assert (tmp_path / "run" / "level_00" / "metrics.json").is_file()
