"""DeepLabv3+ (paper 002's segmenter): smp's decoder on ticketlab's ResNet; structure, groups, any input
size, checkpoints and tickets moving both ways between a classifier and the segmenter, IMP end to end."""

import pytest
import torch
from safetensors.torch import load_file, save_file

from ticketlab.config import ModelConfig, SegmentationConfig, load_config
from ticketlab.data.bundle import DataBundle
from ticketlab.data.synth import SynthConfig, generate_synthetic
from ticketlab.errors import TicketlabError
from ticketlab.lottery.imp import run_imp
from ticketlab.lottery.transfer import plan_transfer
from ticketlab.models import build_model
from ticketlab.sparsity import full_mask, prune, save_mask
from ticketlab.sparsity.scope import in_group

DATA = DataBundle(train=[], val=[], num_classes=5, in_channels=3, image_size=64)
WIDTH = 0.25


def plus(**seg):
    torch.manual_seed(0)
    return build_model(ModelConfig(family="deeplabv3plus", backbone="resnet50", width=WIDTH,
                                   segmentation=SegmentationConfig(head_channels=16, **seg)), DATA)


@pytest.mark.parametrize("os_", [None, 8])
def test_decoder_on_layer1_groups_and_any_input_size(os_):
    built = plus(output_stride=os_)
    model = built.module.eval()
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        features = model.backbone(x)
        out = model(x)["out"]
        assert model(torch.randn(1, 3, 50, 37))["out"].shape == (1, 5, 50, 37)  # padded to the stride, cropped
    stride = os_ or 16  # DeepLabv3+'s default
    assert tuple(features["layer4"].shape[-2:]) == (64 // stride, 96 // stride)
    assert out.shape == (2, 5, 64, 96)
    # the low-level branch reads layer1 (stride 4): change it and the logits change
    assert model.decoder.block1[0].in_channels == features["layer1"].shape[1] and features["layer1"].shape[-1] == 24
    with torch.no_grad():
        model.decoder.block1[0].weight.mul_(-1.0)
        assert not torch.allclose(model(x)["out"], out)
    for n, _ in model.named_parameters():  # base, top, decoder, classifier split the parameters exactly
        assert sum(in_group(n, built.groups[g]) for g in ("base", "top", "decoder", "classifier")) == 1, n
        if n.startswith("backbone."):  # DESIGN.md: base = conv1 … layer3, top = layer4, as the R-CNNs
            assert in_group(n, built.groups["top"]) == n.startswith("backbone.layer4."), n
    assert built.groups["classifier"] == ("segmentation_head",)


def test_refuses_what_it_cannot_build():
    with pytest.raises(TicketlabError, match="aux_loss"):
        plus(aux_loss=True)
    with pytest.raises(TicketlabError, match="8 or 16"):
        plus(output_stride=32)
    with pytest.raises(TicketlabError, match="model.backbone.*resnet18, resnet34, resnet50, resnet101"):
        build_model(ModelConfig(family="deeplabv3plus", backbone="resnet152"), DATA)


def ticket(module, tmp_path, name, convs):
    """A level dir holding an 80%-pruned ticket of `module`'s `convs` (mask + final weights)."""
    state = {k: v.contiguous() for k, v in module.state_dict().items()}
    mask = prune("global", {n: state[n] for n in convs}, full_mask({n: state[n] for n in convs}), 0.8)
    state.update({n: state[n] * keep for n, keep in mask.items()})  # a finished ticket: pruned weights are 0
    level = tmp_path / name / "level_07"
    level.mkdir(parents=True)
    save_mask(level / "mask.safetensors", mask)
    save_file(state, str(level / "final.safetensors"))
    (level / "metrics.json").write_text("{}")
    return level, mask, state


def trunk_convs(module, prefix):
    return [n for n, p in module.named_parameters() if p.dim() == 4 and n.startswith(prefix + "layer")]


@pytest.mark.parametrize("os_", [16, 8])
def test_resnet18_at_output_stride_16_or_8_keeps_the_classifier_trunk_and_takes_its_ticket(os_, tmp_path):
    """Paper 002's CPU-scale trunk: a quarter-width ResNet-18 classifier's ticket fills DeepLabv3+'s backbone."""
    torch.manual_seed(3)
    classifier = build_model(ModelConfig(family="resnet18", width=WIDTH, num_classes=10), DATA).module
    seg = build_model(ModelConfig(family="deeplabv3plus", backbone="resnet18", width=WIDTH,
                                  segmentation=SegmentationConfig(head_channels=16, output_stride=os_)), DATA).module
    trunk = {k[len("backbone."):]: tuple(v.shape) for k, v in seg.state_dict().items() if k.startswith("backbone.")}
    assert trunk == {k: tuple(v.shape) for k, v in classifier.state_dict().items() if not k.startswith("fc.")}
    with torch.no_grad():
        assert seg.eval().backbone(torch.randn(1, 3, 64, 96))["layer4"].shape[-2:] == (64 // os_, 96 // os_)
    level, mask, state = ticket(classifier, tmp_path, "classifier", trunk_convs(classifier, ""))
    cfg = load_config("configs/paper002_cpu_segment.yaml", [f"init.source={level}",
                                                            f"model.segmentation.output_stride={os_}"])
    t = plan_transfer(cfg, seg)
    assert set(t.mask) == {f"backbone.{n}" for n in mask}
    for n, keep in mask.items():
        assert torch.equal(t.mask[f"backbone.{n}"], keep) and torch.equal(t.values[f"backbone.{n}"], state[n])


def test_tickets_and_weights_move_both_ways_between_classifier_and_segmenter(tmp_path):
    torch.manual_seed(1)
    classifier = build_model(ModelConfig(family="resnet50", width=WIDTH, num_classes=10), DATA).module
    seg = plus().module

    level, mask, state = ticket(classifier, tmp_path, "classifier", trunk_convs(classifier, ""))
    cfg = load_config("configs/synth_deeplabv3plus_lite.yaml", [f"init.source={level}"])
    t = plan_transfer(cfg, seg)
    assert set(t.mask) == {f"backbone.{n}" for n in mask}
    for n, keep in mask.items():
        assert torch.equal(t.mask[f"backbone.{n}"], keep) and torch.equal(t.values[f"backbone.{n}"], state[n])

    level, mask, state = ticket(seg, tmp_path, "segmenter", trunk_convs(seg, "backbone."))
    cfg = load_config("configs/paper002_cpu_classify.yaml", [f"init.source={level}"])
    t = plan_transfer(cfg, classifier)
    assert set(t.mask) == {n[len("backbone."):] for n in mask}
    assert all(torch.equal(t.values[n[len("backbone."):]], state[n]) for n in mask)

    weights = tmp_path / "classifier.safetensors"  # a classification checkpoint fills the segmenter's trunk
    save_file({k: v.contiguous() for k, v in classifier.state_dict().items()}, str(weights))
    loaded = build_model(ModelConfig(family="deeplabv3plus", backbone="resnet50", width=WIDTH, weights=str(weights),
                                     segmentation=SegmentationConfig(head_channels=16)), DATA)
    own = loaded.module.state_dict()
    assert loaded.loaded["target_prefix"] == "backbone."
    assert all(torch.equal(own[f"backbone.{k}"], v) for k, v in classifier.state_dict().items() if not k.startswith("fc."))


@pytest.mark.slow
def test_imp_prunes_the_trunk_and_keeps_decoder_and_head_dense(tmp_path):
    synth = tmp_path / "synth"
    generate_synthetic(synth, SynthConfig(n_train=4, n_val=2, seed=2, image_size=64))
    cfg = load_config("configs/synth_deeplabv3plus_lite.yaml", [
        f"data.root={synth}", "train.duration=2it", "train.eval_every=2it", "train.checkpoint_every=1it",
        "train.batch_size=2", "train.eval_batch_size=2", "prune.levels=1", "model.width=0.125",
        "model.segmentation.head_channels=8", "data.image_size=48"])
    rows = run_imp(cfg, tmp_path / "run", log=lambda s: None)
    assert [r["level"] for r in rows] == [0, 1] and rows[1]["sparsity_scope"] == pytest.approx(0.5, abs=1e-3)
    assert 0.0 <= rows[1]["mIoU"] <= 1.0
    final = load_file(str(tmp_path / "run" / "level_01" / "final.safetensors"))
    dense = [k for k in final if k.startswith(("decoder.", "segmentation_head.", "backbone.conv1."))
             and k.endswith("weight") and final[k].dim() == 4]
    assert dense and all((final[k] != 0).all() for k in dense)
    pruned = [k for k in final if k.startswith("backbone.layer") and final[k].dim() == 4]
    zeros = sum(int((final[k] == 0).sum()) for k in pruned)
    assert zeros == pytest.approx(0.5 * sum(final[k].numel() for k in pruned), rel=0.01)
