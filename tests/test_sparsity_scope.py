"""Scope resolution: prunable weights, group membership by path boundary, include/exclude, errors."""

from __future__ import annotations

import pytest
import torchvision
from torch import nn

from ticketlab.errors import TicketlabError
from ticketlab.sparsity import group_of, prunable_parameter_names, resolve_scope


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
        self.layer1 = nn.Sequential(nn.Conv2d(4, 4, 3, bias=False), nn.ReLU())
        self.layer10 = nn.ConvTranspose2d(4, 4, 2)
        self.seq = nn.Conv1d(4, 4, 1)
        self.norm = nn.LayerNorm(4)
        self.fc = nn.Linear(4, 2)


GROUPS = {"stem": ("stem",), "layer1": ("layer1",), "layer10": ("layer10",), "fc": ("fc",),
          "body": ("layer1", "layer10")}


def test_prunable_names_are_conv_and_linear_weights_in_parameter_order():
    assert prunable_parameter_names(Net()) == [
        "stem.0.weight", "layer1.0.weight", "layer10.weight", "seq.weight", "fc.weight"]
    r18 = torchvision.models.resnet18()
    names = prunable_parameter_names(r18)
    assert len(names) == 21 and names[0] == "conv1.weight" and names[-1] == "fc.weight"
    assert all(n.endswith(".weight") and "bn" not in n and "downsample.1" not in n for n in names)


def test_group_of_uses_path_boundaries_and_most_specific_path():
    assert group_of("layer1.0.weight", GROUPS) == "layer1"
    assert group_of("layer10.weight", GROUPS) == "layer10"  # not 'layer1' by substring
    assert group_of("seq.weight", GROUPS) is None
    assert group_of("a.b.weight", {"outer": ("a",), "inner": ("a.b",)}) == "inner"
    assert group_of("weight", {"all": ("",)}) == "all"


def test_resolve_scope_default_groups_include_exclude():
    m = Net()
    assert resolve_scope(m, GROUPS, None) == prunable_parameter_names(m)
    assert resolve_scope(m, GROUPS, ["layer1"]) == ["layer1.0.weight"]
    assert resolve_scope(m, GROUPS, ["fc", "body"]) == ["layer1.0.weight", "layer10.weight", "fc.weight"]
    assert resolve_scope(m, GROUPS, ["fc"], include=["seq.*"]) == ["seq.weight", "fc.weight"]
    assert resolve_scope(m, GROUPS, None, exclude=["stem", "layer1*"]) == ["seq.weight", "fc.weight"]
    assert resolve_scope(m, GROUPS, None, exclude=["fc.weight"]) == [
        "stem.0.weight", "layer1.0.weight", "layer10.weight", "seq.weight"]


def test_unknown_group_suggests_closest_and_lists_valid():
    with pytest.raises(TicketlabError, match=r"'stme'.*did you mean 'stem'.*stem, layer1, layer10, fc, body"):
        resolve_scope(Net(), GROUPS, ["stme"])
    with pytest.raises(TicketlabError, match=r"prune.exclude.*did you mean 'layer1'"):
        resolve_scope(Net(), GROUPS, None, exclude=["layr1"])


def test_patterns_matching_nothing_and_empty_scope_are_errors():
    with pytest.raises(TicketlabError, match="never pruned"):
        resolve_scope(Net(), GROUPS, ["fc"], include=["norm.*"])
    with pytest.raises(TicketlabError, match="matches no parameter"):
        resolve_scope(Net(), GROUPS, ["fc"], include=["nothing.*"])
    with pytest.raises(TicketlabError, match="roi_heads"):
        resolve_scope(Net(), GROUPS, None, exclude=["roi_heads.*"])
    with pytest.raises(TicketlabError, match="scope is empty"):
        resolve_scope(Net(), GROUPS, ["fc"], exclude=["fc"])
    with pytest.raises(TicketlabError, match="holds no conv/linear"):
        resolve_scope(Net(), {**GROUPS, "norms": ("norm",)}, ["norms"])
