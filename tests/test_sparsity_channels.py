"""Channel masks: coupled channels (residual streams, downsample, FPN inputs, depthwise convs) are
removed together, counts are exact, and the masked model equals the one Torch-Pruning compacts."""

import copy

import pytest
import torch
import torchvision
from torch import nn

from ticketlab.config import load_config
from ticketlab.data.bundle import DataBundle
from ticketlab.errors import TicketlabError
from ticketlab.lottery.level import masked_state
from ticketlab.models import build_model
from ticketlab.sparsity.channels import ChannelGroup, Coupled, unit_scores
from ticketlab.sparsity.coupling import compact_channels
from ticketlab.sparsity.granularity import build_granularity


def randomise_norms(model):
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.3)
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
    return model.eval()


def weight_scope(model):
    return [n for n, p in model.named_parameters() if p.dim() > 1]


def dense_mask(model, scope):
    params = dict(model.named_parameters())
    return {n: torch.ones(params[n].shape, dtype=torch.bool) for n in scope}


def masked_and_compacted(model, gran, mask, x):
    """The model with `mask` (and the held norms) applied, and a copy Torch-Pruning compacted."""
    model.load_state_dict(masked_state(model.state_dict(), {**mask, **gran.held(mask)}))
    small = copy.deepcopy(model)
    compact_channels(small, x, gran.units(mask))
    return model, small


def outputs(out):
    return list(out.values()) if isinstance(out, dict) else [out]


def assert_channel_structured(mask):
    """Every kernel [o, i] all kept or all pruned, and kept exactly where output o and input i are."""
    for name, m in mask.items():
        k = m.reshape(m.shape[0], m.shape[1], -1)
        assert (k.all(2) | ~k.any(2)).all(), name
        kernels = k.any(2)
        assert torch.equal(kernels, kernels.any(1)[:, None] & kernels.any(0)[None, :]), name


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    model = randomise_norms(torchvision.models.resnet18(num_classes=10))
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    return model, x, build_granularity("channel", "l1", model, x, weight_scope(model))


def test_resnet18_groups_couple_each_residual_stream(resnet):
    model, x, gran = resnet
    groups = {g.name: g for g in gran.groups}
    assert len(groups) == 12  # 4 residual streams + 8 block-internal conv1 channels; fc feeds the output
    stream1 = {c.param for c in groups["conv1.weight"].rows}
    assert stream1 == {"conv1.weight", "layer1.0.conv2.weight", "layer1.1.conv2.weight"}
    stream2 = {c.param for c in groups["layer2.0.downsample.0.weight"].rows}
    assert stream2 == {"layer2.0.downsample.0.weight", "layer2.0.conv2.weight", "layer2.1.conv2.weight"}
    assert "fc.weight" in {c.param for c in groups["layer4.0.downsample.0.weight"].columns}
    assert {c.param for c in groups["layer2.0.downsample.0.weight"].held} >= {"layer2.0.downsample.1.weight",
                                                                             "layer2.0.downsample.1.bias"}
    assert not any(c.param == "fc.weight" for g in gran.groups for c in g.rows)


def test_global_counts_are_exact_and_coupled_rows_go_together(resnet):
    model, x, gran = resnet
    scope = weight_scope(model)
    mask = gran.next_mask("global", model.state_dict(), dense_mask(model, scope), 0.3, {}, {}, None)
    units = gran.units(mask)
    total = sum(a.numel() for a in units.values())
    assert total - sum(int(a.sum()) for a in units.values()) == round(0.3 * total)
    assert_channel_structured(mask)
    stream = next(g for g in gran.groups if g.name == "layer3.0.downsample.0.weight")
    dead = ~units[stream.name]
    assert dead.any()
    for c in stream.rows:  # the same channels removed from every conv writing into the stream
        assert not mask[c.param][dead].any() and mask[c.param][~dead].flatten(1).any(1).all()
    for c in stream.columns:  # and from every conv reading it
        assert not mask[c.param][:, dead].any()
    again = gran.next_mask("global", model.state_dict(), mask, 0.3, {}, {}, None)
    after = gran.units(again)
    assert all(not (after[n] & ~units[n]).any() for n in units)  # removed channels never come back
    alive = sum(int(a.sum()) for a in units.values())
    assert alive - sum(int(a.sum()) for a in after.values()) == round(0.3 * alive)


def test_layerwise_and_random_count_per_group(resnet):
    model, x, gran = resnet
    scope = weight_scope(model)
    for strategy, gen in (("layerwise", None), ("random", torch.Generator().manual_seed(3))):
        mask = gran.next_mask(strategy, model.state_dict(), dense_mask(model, scope), 0.4, {}, {}, gen)
        for name, alive in gran.units(mask).items():
            assert alive.numel() - int(alive.sum()) == round(0.4 * alive.numel()), (strategy, name)


def test_resnet18_compacted_equals_masked(resnet):
    model, x, gran = resnet
    model = copy.deepcopy(model)
    scope = weight_scope(model)
    mask = gran.next_mask("global", model.state_dict(), dense_mask(model, scope), 0.5, {}, {}, None)
    masked, small = masked_and_compacted(model, gran, mask, x)
    assert isinstance(small, torchvision.models.ResNet)
    assert sum(p.numel() for p in small.parameters()) < 0.4 * sum(p.numel() for p in masked.parameters())
    units = gran.units(mask)
    assert small.layer2[0].conv2.out_channels == int(units["layer2.0.downsample.0.weight"].sum())
    with torch.no_grad():
        torch.testing.assert_close(small(x), masked(x), rtol=1e-5, atol=1e-5)


def test_lite_faster_rcnn_backbone_fpn_inputs_coupled_outputs_kept():
    """configs/synth_fasterrcnn_lite.yaml's ResNet-18 (half width) FPN backbone: its inner convs (the FPN
    inputs, summed top-down) form one group; its output convs feed the heads and keep every channel."""
    cfg = load_config("configs/synth_fasterrcnn_lite.yaml")
    torch.manual_seed(0)
    data = DataBundle(train=[], val=[], num_classes=3, in_channels=3, image_size=64)
    backbone = randomise_norms(build_model(cfg.model, data).module.backbone)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    gran = build_granularity("channel", "l1", backbone, x, weight_scope(backbone))
    inner = next(g for g in gran.groups if g.name.startswith("fpn.inner_blocks"))
    assert {c.param for c in inner.rows} == {f"fpn.inner_blocks.{i}.0.weight" for i in range(4)}
    assert not any(c.param.startswith("fpn.layer_blocks") for g in gran.groups for c in g.rows)
    mask = gran.next_mask("layerwise", backbone.state_dict(), dense_mask(backbone, weight_scope(backbone)), 0.5,
                          {}, {}, None)
    masked, small = masked_and_compacted(backbone, gran, mask, x)
    assert small.fpn.inner_blocks[0][0].out_channels == 32
    with torch.no_grad():
        want, got = masked(x), small(x)
    assert list(got) == list(want) and all(got[k].shape[1] == 64 for k in got)
    for a, b in zip(outputs(want), outputs(got)):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)


def test_depthwise_conv_pruned_with_its_producer():
    torch.manual_seed(0)
    model = randomise_norms(nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 6, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3)))
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    gran = build_granularity("channel", "l1", model, x, weight_scope(model))
    first = next(g for g in gran.groups if "0.weight" in {c.param for c in g.rows})
    assert {c.param for c in first.rows} == {"0.weight", "3.weight"}
    assert {c.param for c in first.held} == {"0.bias", "1.weight", "1.bias", "3.bias", "4.weight", "4.bias"}
    mask = gran.next_mask("layerwise", model.state_dict(), dense_mask(model, weight_scope(model)), 0.5, {}, {}, None)
    masked, small = masked_and_compacted(model, gran, mask, x)
    assert small[3].groups == small[3].out_channels == 4
    with torch.no_grad():
        torch.testing.assert_close(small(x), masked(x), rtol=1e-5, atol=1e-5)


def test_controls_act_on_channels(resnet):
    model, x, gran = resnet
    mask = gran.next_mask("layerwise", model.state_dict(), dense_mask(model, weight_scope(model)), 0.5, {}, {}, None)
    units = gran.units(mask)
    shuffled = gran.random_like(mask, torch.Generator().manual_seed(0))
    flipped = gran.perturb(mask, 0.2, torch.Generator().manual_seed(0))
    comp = gran.complement(mask)
    for control in (shuffled, flipped, comp):
        assert_channel_structured(control)
    shuffled_units, flipped_units, comp_units = gran.units(shuffled), gran.units(flipped), gran.units(comp)
    for name, alive in units.items():
        assert int(shuffled_units[name].sum()) == int(alive.sum())
        assert int(flipped_units[name].sum()) == int(alive.sum())
        moved = int((flipped_units[name] & ~alive).sum())
        assert moved == min(round(0.2 * int(alive.sum())), int((~alive).sum()))
        assert torch.equal(comp_units[name], ~alive)
    assert any(not torch.equal(shuffled_units[n], units[n]) for n in units)
    assert torch.equal(comp["fc.weight"][:, 0], ~units["layer4.0.downsample.0.weight"][:1].expand(10))


def test_l1_scores_hand_computed():
    """Two producers of a 2-channel stream: unit u's score is the mean L1 norm of its rows, over the
    group's mean."""
    state = {"a": torch.tensor([[1.0, -1.0], [2.0, 0.0]]), "b": torch.tensor([[3.0, 1.0], [0.0, 2.0]])}
    rows = tuple(Coupled(n, 0, torch.tensor([0, 1]), torch.tensor([0, 1]), 2) for n in ("a", "b"))
    group = ChannelGroup("a", 2, rows, (), (), ())
    raw = torch.tensor([(2.0 + 4.0) / 2, (2.0 + 2.0) / 2], dtype=torch.float64)  # unit 0: 3, unit 1: 2
    got = unit_scores(state, [group], "l1", {"a": torch.tensor([True, True])})["a"]
    torch.testing.assert_close(got, raw / raw.mean())
    with pytest.raises(TicketlabError, match="no BatchNorm after them"):
        unit_scores(state, [group], "bn_gamma", {"a": torch.tensor([True, True])})


def test_bn_gamma_removes_the_smallest_gammas(resnet):
    model, x, gran = resnet
    model = copy.deepcopy(model)
    with torch.no_grad():
        model.layer1[0].bn1.weight[[3, 7]] = 1e-3
    by_gamma = build_granularity("channel", "bn_gamma", model, x, weight_scope(model))
    mask = by_gamma.next_mask("layerwise", model.state_dict(), dense_mask(model, weight_scope(model)), 2 / 64,
                              {}, {}, None)
    assert (~by_gamma.units(mask)["layer1.0.conv1.weight"]).nonzero().squeeze(1).tolist() == [3, 7]


def test_inverted_removes_the_highest_ranked_channels(resnet):
    model, x, gran = resnet
    state = model.state_dict()
    full = dense_mask(model, weight_scope(model))
    units = gran.units(full)
    scores = unit_scores(state, list(gran.groups), "l1", units)
    inverted = gran.units(gran.inverted(state, full, 0.25, layerwise=True))
    for name, score in scores.items():
        gone = ~inverted[name]
        assert int(gone.sum()) == round(0.25 * score.numel())
        assert score[gone].min() >= score[~gone].max()
