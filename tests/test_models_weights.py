"""Weights files: safe loading, round trips, and one readable error for a misfit."""

import pickle

import pytest
import torch
import torchvision
from safetensors.torch import save_file

from ticketlab.errors import TicketlabError
from ticketlab.models.weights import load_pretrained, load_weights_file


@pytest.fixture(scope="module")
def resnet18_state():
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None).state_dict()


def assert_same(module, state):
    got = module.state_dict()
    assert list(got) == list(state)
    for k, v in state.items():
        assert torch.equal(got[k], v), k


@pytest.mark.parametrize("wrap", [None, "state_dict", "model"])
def test_pth_round_trip(tmp_path, resnet18_state, wrap):
    path = tmp_path / "w.pth"
    torch.save(resnet18_state if wrap is None else {wrap: resnet18_state, "epoch": 3}, path)
    target = torchvision.models.resnet18(weights=None)
    report = load_pretrained(target, path)
    assert report.ok
    assert_same(target, resnet18_state)


def test_safetensors_round_trip(tmp_path, resnet18_state):
    path = tmp_path / "w.safetensors"
    save_file(resnet18_state, str(path))
    loaded = load_weights_file(path)
    assert set(loaded) == set(resnet18_state)
    target = torchvision.models.resnet18(weights=None)
    load_pretrained(target, path)
    assert_same(target, resnet18_state)


def test_ddp_prefix_is_stripped(tmp_path, resnet18_state):
    path = tmp_path / "ddp.pt"
    torch.save({f"module.{k}": v for k, v in resnet18_state.items()}, path)
    assert set(load_weights_file(path)) == set(resnet18_state)


def test_wrong_architecture_lists_keys(tmp_path, resnet18_state):
    path = tmp_path / "r18.pth"
    torch.save(resnet18_state, path)
    target = torchvision.models.resnet50(weights=None)
    with pytest.raises(TicketlabError) as info:
        load_pretrained(target, path)
    msg = str(info.value)
    assert "\n" not in msg and str(path) in msg
    assert "missing: layer1.0.conv3.weight" in msg
    assert "of another shape" in msg and "layer1.0.conv1.weight" in msg
    assert "more)" in msg  # long lists are truncated with a count
    # non-strict: loads what fits, reports the rest
    report = load_pretrained(target, path, strict=False)
    assert not report.ok and "layer1.0.conv3.weight" in report.missing
    assert torch.equal(target.state_dict()["conv1.weight"], resnet18_state["conv1.weight"])


def test_unexpected_keys_reported(tmp_path, resnet18_state):
    path = tmp_path / "extra.safetensors"
    save_file({**resnet18_state, "extra.weight": torch.zeros(2)}, str(path))
    with pytest.raises(TicketlabError, match=r"1 unexpected: extra\.weight"):
        load_pretrained(torchvision.models.resnet18(weights=None), path)


class _Payload:
    def __reduce__(self):
        import pathlib

        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("writer", ["pickle", "torch.save"])
def test_malicious_pickle_is_refused_without_running(tmp_path, writer):
    marker = tmp_path / "pwned"
    payload = _Payload()
    payload.marker = str(marker)
    path = tmp_path / "evil.pth"
    obj = {"conv1.weight": torch.zeros(1), "x": payload}
    if writer == "pickle":
        with open(path, "wb") as f:
            pickle.dump(obj, f)
    else:
        torch.save(obj, path)
    assert not marker.exists()
    with pytest.raises(TicketlabError, match="evil.pth.*never unpickled"):
        load_weights_file(path)
    assert not marker.exists()


def test_missing_bad_suffix_and_non_tensor_entries(tmp_path):
    with pytest.raises(TicketlabError, match="file not found"):
        load_weights_file(tmp_path / "nope.pth")
    (tmp_path / "w.npz").write_bytes(b"x")
    with pytest.raises(TicketlabError, match=r"expected a \.safetensors"):
        load_weights_file(tmp_path / "w.npz")
    torch.save({"a": torch.zeros(1), "lr": 0.1}, tmp_path / "mixed.pt")
    with pytest.raises(TicketlabError, match="not tensors: lr"):
        load_weights_file(tmp_path / "mixed.pt")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(TicketlabError, match="junk.safetensors"):
        load_weights_file(tmp_path / "junk.safetensors")
