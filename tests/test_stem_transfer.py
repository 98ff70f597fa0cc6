"""A ticket or mask of an RGB conv1 transferred to a 1-channel model (paper 002 Figs. 3-4: Fashion-MNIST,
digits): kept where kept in any RGB channel, values summed over the kept ones (`models/stem_channels.py`)."""

import pytest
import torch
import torch.nn.functional as F

from ticketlab.config import ModelConfig, load_config
from ticketlab.data.bundle import DataBundle
from ticketlab.errors import TicketlabError
from ticketlab.lottery.transfer import plan_transfer
from ticketlab.models import build_model
from ticketlab.models.stem_channels import adapt_stem_ticket
from ticketlab.sparsity import full_mask, prune, save_mask

from hand_levels import write_ticket_level


def test_hand_built_mask_keeps_a_position_kept_in_any_channel_and_sums_the_kept_values():
    weight = torch.arange(1.0, 13.0).reshape(1, 3, 2, 2)      # channel c, position p: 4c + p + 1
    mask = torch.tensor([[[[1, 0], [0, 0]],                   # R keeps position 0
                          [[1, 1], [0, 0]],                   # G keeps 0, 1
                          [[0, 0], [0, 0]]]], dtype=torch.bool)  # B keeps none; position 2, 3 pruned everywhere
    summed, kept = adapt_stem_ticket(weight, mask, (1, 1, 2, 2), "init.source=x")
    assert kept.tolist() == [[[[True, True], [False, False]]]]
    assert summed.tolist() == [[[[1.0 + 5.0, 6.0], [0.0, 0.0]]]]   # R0 + G0, G1; pruned RGB weights left out
    whole, none = adapt_stem_ticket(weight, None, (1, 1, 2, 2), "init.source=x")
    assert none is None and whole.tolist() == [[[[15.0, 18.0], [21.0, 24.0]]]]


def test_adapted_ticket_computes_what_the_rgb_ticket_computes_on_the_gray_image():
    torch.manual_seed(0)
    weight, mask = torch.randn(8, 3, 7, 7), torch.rand(8, 3, 7, 7) > 0.7
    summed, kept = adapt_stem_ticket(weight, mask, (8, 1, 7, 7), "x")
    gray = torch.randn(2, 1, 20, 20)
    rgb_ticket = F.conv2d(gray.expand(-1, 3, -1, -1), weight * mask)
    torch.testing.assert_close(F.conv2d(gray, summed * kept), rgb_ticket)
    assert torch.equal(summed * kept, summed)   # nothing outside the adapted mask carries a value


@pytest.mark.parametrize("shape, target", [((4, 3, 7, 7), (4, 2, 7, 7)), ((4, 3, 7, 7), (4, 1, 3, 3)),
                                           ((4, 1, 7, 7), (4, 1, 7, 7)), ((4, 3, 7, 7), (8, 1, 7, 7))])
def test_shapes_that_cannot_be_adapted_are_one_clear_error(shape, target):
    with pytest.raises(TicketlabError, match=r"^init.source=x: conv1 of shape .* does not fit this model's .*"
                                             r"only an RGB conv1 \(out, 3, k, k\) adapts"):
        adapt_stem_ticket(torch.ones(shape), torch.ones(shape, dtype=torch.bool), target, "init.source=x")


def _rgb_level(tmp_path):
    """A finished level of a 3-channel quarter-width ResNet-18 whose mask covers conv1 and layer1."""
    torch.manual_seed(1)
    net = build_model(ModelConfig(family="resnet18", width=0.25), DataBundle([], [], 5, 3, 32)).module
    state = {k: v.contiguous() for k, v in net.state_dict().items()}
    weights = {n: state[n] for n in state if n == "conv1.weight" or (n.startswith("layer1.") and state[n].dim() == 4)}
    mask = prune("global", weights, full_mask(weights), 0.8)
    level = tmp_path / "rgb" / "level_01"
    write_ticket_level(level, state, mask)
    return level, state, mask


@pytest.mark.parametrize("mode", ["ticket", "mask"])
def test_rgb_run_transfers_onto_a_one_channel_model(tmp_path, mode):
    level, state, mask = _rgb_level(tmp_path)
    cfg = load_config("configs/paper002_cpu_digits.yaml", [f"init.source={level}", f"init.mode={mode}"])
    gray = build_model(cfg.model, DataBundle([], [], 10, 1, 32)).module
    t = plan_transfer(cfg, gray)
    assert set(t.mask) == set(mask)
    assert torch.equal(t.mask["conv1.weight"], mask["conv1.weight"].any(dim=1, keepdim=True))
    assert torch.equal(t.mask["layer1.0.conv1.weight"], mask["layer1.0.conv1.weight"])
    assert list(t.info["adapted"]) == ["conv1.weight"]   # init.json says which tensors were adapted
    if mode == "ticket":
        expected = (state["conv1.weight"] * mask["conv1.weight"]).sum(dim=1, keepdim=True)
        torch.testing.assert_close(t.values["conv1.weight"], expected)
        assert torch.equal(t.values["layer1.0.conv1.weight"], state["layer1.0.conv1.weight"] * mask["layer1.0.conv1.weight"])
    else:
        assert t.values == {}
    gray.load_state_dict(t.values, strict=False)   # the adapted shapes fit the 1-channel model


def test_rgb_run_onto_a_two_channel_model_is_one_clear_error(tmp_path):
    level, _, _ = _rgb_level(tmp_path)
    cfg = load_config("configs/paper002_cpu_digits.yaml", [f"init.source={level}", "init.mode=mask"])
    two = build_model(cfg.model, DataBundle([], [], 10, 2, 32)).module
    with pytest.raises(TicketlabError, match=r"conv1.weight \(16, 3, 7, 7\) vs model \(16, 2, 7, 7\) "
                                             r"\(an RGB conv1 adapts only to a 1-channel one\)$"):
        plan_transfer(cfg, two)


def test_a_mask_without_conv1_adapts_nothing(tmp_path):
    level, _, mask = _rgb_level(tmp_path)
    del mask["conv1.weight"]
    save_mask(level / "mask.safetensors", mask)
    cfg = load_config("configs/paper002_cpu_digits.yaml", [f"init.source={level}", "init.mode=mask"])
    t = plan_transfer(cfg, build_model(cfg.model, DataBundle([], [], 10, 1, 32)).module)
    assert set(t.mask) == set(mask) and "adapted" not in t.info
