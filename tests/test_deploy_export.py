"""`ticketlab export`: exported tickets reproduce the masked model in stock torchvision, TorchScript and
ONNX Runtime, and compaction removes only channels that cannot change the outputs."""

import copy

import numpy as np
import onnxruntime
import pytest
import torch
import torchvision
from PIL import Image
from safetensors.torch import load_file
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone

from ticketlab.atomic import atomic_save_safetensors
from ticketlab.cli import main
from ticketlab.config import load_config
from ticketlab.data.synth import SynthConfig, generate_synthetic
from ticketlab.deploy import compact, export_level, flat_outputs, load_ticket
from ticketlab.errors import TicketlabError
from ticketlab.lottery.experiment import build_experiment
from ticketlab.lottery.imp import run_imp
from ticketlab.models.resnet import torchvision_resnet
from ticketlab.rundir import RunDir
from ticketlab.sparsity import full_mask, prune_layerwise, save_mask


def close(a, b):
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def write_image_folder(root, size=32):
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in ("a", "b"):
            (root / split / c).mkdir(parents=True)
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(root / split / c / "0.png")


def make_level(cfg, run, edit):
    """A finished level written by hand: layerwise magnitude pruning to 80%, then `edit(model, mask)`
    zeroes whole filters / kernels and sets norm statistics; BN statistics are made non-trivial."""
    RunDir(run).start(cfg)
    exp = build_experiment(cfg)
    model = exp.model
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)
    params = dict(model.named_parameters())
    weights = {n: params[n].detach() for n in exp.scope}
    mask = prune_layerwise(weights, full_mask(weights), 0.8)
    edit(model, mask)
    with torch.no_grad():
        for n, m in mask.items():
            params[n].mul_(m)
    level = run / "level_01"
    save_mask(level / "mask.safetensors", mask)
    atomic_save_safetensors(level / "final.safetensors", model.state_dict())
    return level


def zero_filters(model, mask, producer, norm, channels, shift):
    """Prune producer filters `channels` entirely and give their norm a constant output of sign `shift`."""
    name = producer + ".weight"
    mask[name][channels] = False
    with torch.no_grad():
        bn = model.get_submodule(norm)
        bn.bias[channels] = shift * 3.0
        bn.running_mean[channels] = 0.0


@pytest.fixture(scope="module")
def resnet_level(tmp_path_factory):
    root = tmp_path_factory.mktemp("resnet")
    write_image_folder(root / "data")
    cfg = load_config(None, ["model.family=resnet18", "data.format=imagefolder", f"data.root={root / 'data'}",
                             "data.image_size=32", "prune.exclude=[stem, fc]"])

    def edit(model, mask):
        zero_filters(model, mask, "layer1.0.conv1", "layer1.0.bn1", [0, 1, 2], shift=-1)  # relu(const) = 0
        zero_filters(model, mask, "layer1.1.conv1", "layer1.1.bn1", [5, 6], shift=+1)  # constant > 0, 3x3 conv
        mask["layer2.0.conv2.weight"][:, 7:11] = False  # channels 7..10 of layer2.0's hidden layer never read

    return make_level(cfg, root / "run", edit)


def test_resnet18_state_dict_loads_into_stock_torchvision(resnet_level, tmp_path):
    ticket = load_ticket(resnet_level)
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = ticket.model(x)
    for out in (tmp_path / "t.safetensors", tmp_path / "t.pt"):
        result = export_level(resnet_level, "state_dict", out)
        assert "torchvision.models.resnet18(num_classes=2)" in result.notes[0]
        state = load_file(out) if out.suffix == ".safetensors" else torch.load(out, weights_only=True)
        stock = torchvision.models.resnet18(num_classes=2)
        stock.load_state_dict(state, strict=True)
        with torch.no_grad():
            close(stock.eval()(x), expected)
        assert (state["layer1.0.conv1.weight"][0] == 0).all()


def test_compaction_is_exact_and_removes_only_provably_dead_channels(resnet_level):
    ticket = load_ticket(resnet_level)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    small = copy.deepcopy(ticket.model)
    report = compact(small)
    with torch.no_grad():
        close(small(x), ticket.model(x))
    rows = {r.producer: r for r in report.rows}
    assert (rows["layer1.0.conv1"].zero, small.layer1[0].conv1.out_channels, small.layer1[0].conv2.in_channels) \
        == (3, 61, 61)
    assert rows["layer1.1.conv1"].kept == 64  # zero filters, but BN makes them a nonzero constant
    assert rows["layer2.0.conv1"].unread == 4 and small.layer2[0].bn1.num_features == 124
    assert report.params_after < report.params_before
    # the kept constant channels matter: dropping them (as a naive "zero filter" rule would) changes outputs
    naive = copy.deepcopy(ticket.model)
    with torch.no_grad():
        naive.layer1[1].conv2.weight[:, [5, 6]] = 0
        assert (naive(x) - ticket.model(x)).abs().max() > 1e-3


def test_resnet18_compact_onnx_and_torchscript_match_the_masked_model(resnet_level, tmp_path):
    ticket = load_ticket(resnet_level)
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(3))  # another batch size: dynamic axis
    with torch.no_grad():
        expected = ticket.model(x)
    onnx_result = export_level(resnet_level, "onnx", tmp_path / "t.onnx", compact=True)
    assert onnx_result.compaction.channels_removed == 7
    session = onnxruntime.InferenceSession(str(tmp_path / "t.onnx"), providers=["CPUExecutionProvider"])
    close(torch.from_numpy(session.run(None, {"images": x.numpy()})[0]), expected)
    export_level(resnet_level, "torchscript", tmp_path / "t.pt", compact=True)
    with torch.no_grad():
        close(torch.jit.load(str(tmp_path / "t.pt"))(x), expected)


def test_width_scaled_resnet_fits_its_width_not_the_stock_model(tmp_path):
    write_image_folder(tmp_path / "data")
    cfg = load_config(None, ["model.family=resnet18", "model.width=0.25", "data.format=imagefolder",
                             f"data.root={tmp_path / 'data'}", "data.image_size=32"])
    level = make_level(cfg, tmp_path / "run", lambda model, mask: None)
    result = export_level(level, "state_dict")
    assert "model.width=0.25" in result.notes[0] and "not the stock" in result.notes[0]
    state = load_file(result.path)
    with pytest.raises(RuntimeError):
        torchvision.models.resnet18(num_classes=2).load_state_dict(state, strict=True)
    torchvision_resnet(18, 0.25, num_classes=2).load_state_dict(state, strict=True)


@pytest.fixture(scope="module")
def detector_level(tmp_path_factory):
    root = tmp_path_factory.mktemp("det")
    generate_synthetic(root / "data", SynthConfig(n_train=2, n_val=2, image_size=64, seed=1))
    cfg = load_config("configs/synth_fasterrcnn_lite.yaml", [
        f"data.root={root / 'data'}", "data.image_size=64", "model.width=1.0", "model.detection.fpn_channels=256",
        "model.detection.anchor_sizes=null", "model.detection.box_representation_size=1024",
        "model.detection.box_score_thresh=0.0", "model.detection.box_detections_per_img=20"])

    def edit(model, mask):
        zero_filters(model, mask, "backbone.body.layer1.0.conv1", "backbone.body.layer1.0.bn1", [0, 1], shift=-1)
        fc6 = model.roi_heads.box_head.fc6
        mask["roi_heads.box_head.fc6.weight"][:40] = False
        with torch.no_grad():
            fc6.bias[:20] = -1.0  # 20 rows output relu(-1) = 0, 20 rows a positive constant folded into fc7
            fc6.bias[20:40] = 0.5
        mask["roi_heads.box_head.fc7.weight"][:10] = False  # fc7 units 0..9 feed the predictor only their bias
        with torch.no_grad():
            model.roi_heads.box_head.fc7.bias[:10] = 0.3

    return make_level(cfg, root / "run", edit)


def stock_fasterrcnn(cfg, num_classes):
    d = cfg.model.detection
    backbone = resnet_fpn_backbone(backbone_name="resnet18", weights=None, trainable_layers=5)
    return FasterRCNN(backbone, num_classes=num_classes, min_size=64, max_size=round(64 * 1333 / 800),
                      rpn_pre_nms_top_n_test=d.rpn_pre_nms_top_n_test, rpn_post_nms_top_n_test=d.rpn_post_nms_top_n_test,
                      box_score_thresh=d.box_score_thresh, box_detections_per_img=d.box_detections_per_img).eval()


def test_detector_loads_into_stock_fasterrcnn_and_exports_match(detector_level, tmp_path):
    ticket = load_ticket(detector_level)
    image = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        expected = ticket.model([image])
    assert len(expected[0]["boxes"]) > 0
    result = export_level(detector_level, "state_dict", tmp_path / "d.safetensors")
    assert "resnet_fpn_backbone" in result.notes[0]
    stock = stock_fasterrcnn(ticket.cfg, ticket.experiment.data.num_classes)
    stock.load_state_dict(load_file(tmp_path / "d.safetensors"), strict=True)
    with torch.no_grad():
        got = stock([image])
    for key in ("boxes", "scores", "labels"):
        close(got[0][key], expected[0][key])

    # ONNX and TorchScript of the compacted detector, checked on the run's own validation image
    # by export_level itself and here on it again through the runtimes
    with torch.no_grad():
        reference = flat_outputs(ticket.model(ticket.example))
    r = export_level(detector_level, "onnx", tmp_path / "d.onnx", compact=True)
    rows = {row.producer: row for row in r.compaction.rows}
    assert (rows["roi_heads.box_head.fc6"].zero, rows["roi_heads.box_head.fc6"].folded) == (20, 20)
    assert rows["roi_heads.box_head.fc7"].folded == 10
    assert rows["backbone.body.layer1.0.conv1"].zero == 2
    session = onnxruntime.InferenceSession(str(tmp_path / "d.onnx"), providers=["CPUExecutionProvider"])
    outs = session.run(None, {"images": ticket.example[0].numpy()})
    for a, b in zip(reference, outs):
        close(torch.from_numpy(b), a)
    export_level(detector_level, "torchscript", tmp_path / "d.pt", compact=True, csr_box_head=True)
    loaded = torch.jit.load(str(tmp_path / "d.pt"))
    with torch.no_grad():
        for a, b in zip(reference, flat_outputs(loaded(ticket.example))):
            close(b, a)


def test_digits_cli_exports_every_format(tmp_path, capsys):
    run = tmp_path / "run"
    cfg = load_config("configs/digits_lenet.yaml", ["train.duration=1ep", "prune.levels=1", "prune.rate=0.9"])
    run_imp(cfg, run, log=lambda s: None)
    level = run / "level_01"
    for fmt in ("state_dict", "onnx", "torchscript"):
        assert main(["export", str(level), "--format", fmt]) == 0
    assert main(["export", str(level), "--format", "onnx", "--compact", "--out", str(tmp_path / "c.onnx")]) == 0
    out = capsys.readouterr().out
    assert "not a torchvision architecture" in out and "hidden channels removed" in out
    assert {p.name for p in level.glob("ticket*")} == {"ticket.safetensors", "ticket.onnx", "ticket.torchscript.pt"}
    ticket = load_ticket(level)
    x = ticket.experiment.data.val.tensors[0][:16]
    session = onnxruntime.InferenceSession(str(tmp_path / "c.onnx"), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        close(torch.from_numpy(session.run(None, {"images": x.numpy()})[0]), ticket.model(x))
    assert main(["export", str(level), "--format", "state_dict", "--compact"]) == 2
    assert main(["export", str(level), "--format", "onnx", "--csr-box-head"]) == 2
    with pytest.raises(TicketlabError, match="nonzero where"):
        state = load_file(level / "final.safetensors")
        state["layer1.weight"] = torch.ones_like(state["layer1.weight"])
        atomic_save_safetensors(level / "final.safetensors", state)
        load_ticket(level)


@pytest.fixture(scope="module")
def deeplabv3plus_level(tmp_path_factory):
    root = tmp_path_factory.mktemp("seg")
    generate_synthetic(root / "data", SynthConfig(n_train=2, n_val=2, image_size=64, seed=1))
    cfg = load_config("configs/synth_deeplabv3plus_lite.yaml", [f"data.root={root / 'data'}", "data.image_size=64",
                                                                 "model.width=0.125", "model.segmentation.head_channels=16"])

    def edit(model, mask):  # two dead filters in layer1, which compaction must remove
        zero_filters(model, mask, "backbone.layer1.0.conv1", "backbone.layer1.0.bn1", [0, 1], shift=-1)

    return make_level(cfg, root / "run", edit)


def test_deeplabv3plus_exports_every_format_and_each_runs_like_the_masked_model(deeplabv3plus_level, tmp_path,
                                                                                 capsys):
    level = deeplabv3plus_level
    ticket = load_ticket(level)
    for fmt in ("state_dict", "onnx", "torchscript"):
        assert main(["export", str(level), "--format", fmt]) == 0, fmt
    assert main(["export", str(level), "--format", "torchscript", "--compact", "--out", str(tmp_path / "c.pt")]) == 0
    assert "2 hidden channels removed" in capsys.readouterr().out
    image = ticket.example
    other = torch.rand(1, 3, 50, 37, generator=torch.Generator().manual_seed(0))  # padded to stride 16, cropped
    with torch.no_grad():
        expected = ticket.model(image)["out"]
        expected_other = ticket.model(other)["out"]
        fresh = ticket.experiment.fresh_model(seed=1).eval()
        fresh.load_state_dict(load_file(level / "ticket.safetensors"), strict=True)
        close(fresh(image)["out"], expected)
        for path in (level / "ticket.torchscript.pt", tmp_path / "c.pt"):
            scripted = torch.jit.load(str(path))
            close(scripted(image)["out"], expected)
            close(scripted(other)["out"], expected_other)  # scripted, the padding still follows the size
    session = onnxruntime.InferenceSession(str(level / "ticket.onnx"), providers=["CPUExecutionProvider"])
    close(torch.from_numpy(session.run(None, {"images": image.numpy()})[0]), expected)


def test_yolov4_exports_state_dict_and_onnx_and_refuses_torchscript_in_one_line(tmp_path, capsys):
    generate_synthetic(tmp_path / "data", SynthConfig(n_train=2, n_val=2, image_size=64, seed=1))
    cfg = load_config("configs/synth_yolov4_lite.yaml", [f"data.root={tmp_path / 'data'}", "data.image_size=64",
                                                          "model.width=0.125", "model.yolo.neck_channels=16"])
    level = make_level(cfg, tmp_path / "run", lambda model, mask: None)
    assert main(["export", str(level), "--format", "torchscript"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "yolov4 does not compile with torch.jit.script" in err
    assert not (level / "ticket.torchscript.pt").exists()
    for fmt in ("state_dict", "onnx"):  # each checked against the masked model by export itself
        assert main(["export", str(level), "--format", fmt]) == 0, fmt
