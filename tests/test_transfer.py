"""Ticket, mask and magnitude transfer (`init:`): enforced through fine-tuning, carried into IMP."""

import json

import pytest
import torch
import torch.nn.utils.prune as tprune
from safetensors.torch import load_file, save_file

from ticketlab.config import ModelConfig, load_config
from ticketlab.data.bundle import DataBundle
from ticketlab.errors import TicketlabError
from ticketlab.lottery.imp import run_imp
from ticketlab.lottery.transfer import plan_transfer
from ticketlab.models import build_model
from ticketlab.sparsity import full_mask, load_mask, prune
from ticketlab.tasks import build_task_data

from hand_levels import write_ticket_level

SMALL = ["model.family=cifar_resnet20", "model.width=0.5", "train.duration=6it", "train.eval_every=6it",
         "train.checkpoint_every=6it", "prune.rate=0.5", "prune.levels=1"]


def config(*extra):
    return load_config("configs/digits_lenet.yaml", SMALL + list(extra))


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A real classifier ticket: one IMP level (50% of the convs) on digits."""
    out = tmp_path_factory.mktemp("transfer") / "source"
    run_imp(config("prune.exclude=[fc]"), out, log=lambda s: None)
    return out / "level_01"


@pytest.fixture(scope="module")
def target(source):
    """The ticket moved into a classifier with a new 12-way head; levels prune only the ResNet."""
    out = source.parent.parent / "target"
    run_imp(config("model.num_classes=12", f"init.source={source}", "prune.scope=[layer1, layer2, layer3]"),
            out, log=lambda s: None)
    return out


def test_transferred_zeros_stay_zero_and_network_sparsity_counts_them(source, target):
    src_mask = load_mask(source / "mask.safetensors")
    final = load_file(str(target / "level_00" / "final.safetensors"))
    mask0 = load_mask(target / "level_00" / "mask.safetensors")
    for name, keep in src_mask.items():
        if name.startswith("fc."):
            continue
        assert torch.equal(mask0[name], keep), name
        assert torch.count_nonzero(final[name][~keep]) == 0, name   # exactly 0 after fine-tuning
    metrics = json.loads((target / "level_00" / "metrics.json").read_text())
    pruned = sum(int((~m).sum()) for m in src_mask.values())
    params = sum(p.numel() for p in build_model(config("model.num_classes=12").model,
                                                DataBundle([], [], 12, 1, 8)).module.parameters())
    assert metrics["sparsity_network"] == pytest.approx(pruned / params, abs=1e-12)
    record = json.loads((target / "init.json").read_text())["transfer"]
    assert record["mode"] == "ticket" and record["source"] == str(source)
    assert "fc.weight" in record["dropped_examples"] and record["sparsity_network"] == metrics["sparsity_network"]


def test_ticket_values_are_the_source_weights_and_levels_prune_among_kept(source, target):
    src_final = load_file(str(source / "final.safetensors"))
    start = load_file(str(target / "level_00" / "rewind.safetensors"))
    for k, v in src_final.items():
        if not k.startswith("fc."):
            assert torch.equal(start[k], v), k
    mask0 = load_mask(target / "level_00" / "mask.safetensors")
    mask1 = load_mask(target / "level_01" / "mask.safetensors")
    for name in mask0:
        assert not bool((mask1[name] & ~mask0[name]).any()), name   # no pruned weight comes back
    final1 = load_file(str(target / "level_01" / "final.safetensors"))
    assert all(torch.count_nonzero(final1[n][~m]) == 0 for n, m in mask1.items())


DATA = DataBundle(train=[], val=[], num_classes=3, in_channels=3, image_size=64)
TINY_DET = {"fpn_channels": 16, "box_representation_size": 32, "mask_head_channels": 8,
            "keypoint_head_channels": 8, "keypoint_head_depth": 2, "num_keypoints": 5}


def _detector(family, num_classes):
    torch.manual_seed({"maskrcnn": 1, "keypointrcnn": 2}[family])
    cfg = ModelConfig(family=family, backbone="resnet18", width=0.25, num_classes=num_classes)
    cfg.detection.__dict__.update(TINY_DET)
    return build_model(cfg, DATA).module


def test_mask_rcnn_ticket_into_keypoint_rcnn_copies_every_shared_tensor(tmp_path):
    """Paper 001 App. B: values up to the box head; the class-specific predictors differ in shape."""
    src = _detector("maskrcnn", 81)
    state = {k: v.contiguous() for k, v in src.state_dict().items()}
    weights = {n: state[n] for n, p in src.named_parameters() if n.endswith("weight") and p.dim() > 1}
    mask = prune("global", weights, full_mask(weights), 0.8)
    level = tmp_path / "level_01"
    write_ticket_level(level, state, mask)  # a ticket: pruned weights exactly 0
    cfg = config(f"init.source={level}", "init.map=shared")
    dst = _detector("keypointrcnn", 2)
    t = plan_transfer(cfg, dst)
    own = dst.state_dict()
    expected = {k for k in state if k in own and state[k].shape == own[k].shape}
    assert set(t.values) == expected
    assert any(k.startswith("roi_heads.box_head.") for k in expected)
    assert not any(k.startswith(("roi_heads.box_predictor", "roi_heads.mask")) for k in t.values)
    assert set(t.mask) == {n for n in mask if n in expected}
    assert "roi_heads.box_predictor.cls_score.weight" in t.info["mask_dropped"]


def test_magnitude_mode_keeps_the_largest_backbone_weights(tmp_path):
    """Paper 001 App. A: the same weights torch's global L1 pruning keeps, on the pretrained trunk."""
    torch.manual_seed(3)
    net = build_model(ModelConfig(family="resnet18", width=0.25), DATA).module
    path = tmp_path / "pre.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    cfg = config("init.mode=magnitude", "init.sparsity=0.9", "model.family=fasterrcnn",
                 "model.backbone=resnet18", "model.width=0.25", f"model.weights={path}")
    det = build_model(cfg.model, DATA).module
    t = plan_transfer(cfg, det)
    convs = [(m, "weight") for n, m in net.named_modules() if isinstance(m, torch.nn.Conv2d)]
    tprune.global_unstructured(convs, pruning_method=tprune.L1Unstructured, amount=0.9)
    reference = {f"backbone.body.{n}.weight": m.weight_mask.bool() for n, m in net.named_modules()
                 if isinstance(m, torch.nn.Conv2d)}
    assert set(t.mask) == set(reference)
    for name, keep in reference.items():
        assert torch.equal(t.mask[name], keep), name


@pytest.mark.parametrize("extra, match", [
    (["init.source=/nonexistent/level_01"], "init.source=/nonexistent/level_01: expected a finished level"),
    (["init.mode=magnitude"], "init.sparsity"),
    (["init.mode=magnitude", "init.sparsity=0.5", "init.source=x"], "takes no source"),
])
def test_bad_init_names_the_key(extra, match):
    cfg = config(*extra)
    model = build_model(cfg.model, DataBundle([], [], 10, 1, 8)).module
    with pytest.raises(TicketlabError, match=match):
        plan_transfer(cfg, model)


@pytest.mark.slow
def test_classifier_ticket_in_a_faster_rcnn_backbone(tmp_path):
    """Paper 001 §4.2 / Table 1: 90% of the backbone pruned; network sparsity is pruned / all params."""
    from ticketlab.data.synth import SynthConfig, generate_synthetic

    synth = tmp_path / "synth"
    generate_synthetic(synth, SynthConfig(n_train=4, n_val=2, seed=3))
    src = _detector("maskrcnn", 3).backbone.body  # any ResNet-18 at width 0.25 stands in for a classifier
    state = {k: v.contiguous() for k, v in src.state_dict().items()}
    weights = {n: state[n] for n, p in src.named_parameters() if p.dim() == 4}
    mask = prune("global", weights, full_mask(weights), 0.9)
    level = tmp_path / "imagenet" / "level_10"
    write_ticket_level(level, state, mask)
    cfg = load_config("configs/synth_fasterrcnn_lite.yaml", [
        f"data.root={synth}", "train.duration=2it", "train.eval_every=2it", "train.batch_size=2",
        "model.width=0.25", "prune.levels=0", "prune.scope=[base, top]", "prune.exclude=[]",
        f"init.source={level}"])
    run_imp(cfg, tmp_path / "run", log=lambda s: None)
    final = load_file(str(tmp_path / "run" / "level_00" / "final.safetensors"))
    for name, keep in mask.items():
        assert torch.count_nonzero(final[f"backbone.body.{name}"][~keep]) == 0, name
    metrics = json.loads((tmp_path / "run" / "level_00" / "metrics.json").read_text())
    det = build_model(cfg.model, build_task_data(cfg)).module
    pruned = sum(int((~m).sum()) for m in mask.values())
    assert metrics["sparsity_network"] == pytest.approx(pruned / sum(p.numel() for p in det.parameters()), abs=1e-12)
    assert metrics["sparsity_scope"] == pytest.approx(0.9, abs=1e-6)
