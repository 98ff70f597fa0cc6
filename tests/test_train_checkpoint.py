"""Checkpoints: exact round trip (model, Adam state, RNG, extra), refusal of damaged or unfitting files."""

import copy

import pytest
import torch
from torch import nn

from ticketlab.config import TrainConfig
from ticketlab.errors import TicketlabError
from ticketlab.train import build_optimizer, clear_checkpoint, load_checkpoint, load_optimizer_state, save_checkpoint


def make(seed: int = 0, hidden: int = 5, optimizer: str = "adam"):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Linear(hidden, 2))
    return model, build_optimizer(model.parameters(), TrainConfig(optimizer=optimizer, lr=0.01, weight_decay=1e-3))


def train_steps(model, opt, n: int, seed: int = 1) -> None:
    gen = torch.Generator().manual_seed(seed)
    for _ in range(n):
        x = torch.randn(6, 4, generator=gen)
        opt.zero_grad()
        model(x).pow(2).mean().backward()
        opt.step()


def test_round_trip_restores_model_adam_state_rng_and_extra(tmp_path):
    model, opt = make()
    train_steps(model, opt, 3)
    path = tmp_path / "checkpoint.safetensors"
    extra = {"history": [{"step": 3, "loss": 0.1}], "sums": {"loss": 1.5}, "nan": float("nan")}
    save_checkpoint(path, model=model, optimizer=opt, step=3, extra=extra)
    expected_draw = torch.rand(5)

    other, other_opt = make(seed=7)
    step, got = load_checkpoint(path, other, other_opt)
    assert step == 3
    assert got["history"] == extra["history"] and got["sums"] == extra["sums"] and got["nan"] != got["nan"]
    assert torch.equal(torch.rand(5), expected_draw)  # RNG restored to the moment of saving
    for (k, a), b in zip(model.state_dict().items(), other.state_dict().values()):
        assert torch.equal(a, b), k
    sa, sb = opt.state_dict(), other_opt.state_dict()
    assert sa["param_groups"] == sb["param_groups"]
    assert isinstance(other_opt.param_groups[0]["betas"], tuple)
    for idx in sa["state"]:
        for key in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(sa["state"][idx][key], sb["state"][idx][key]), (idx, key)
    # and training on from both gives the same weights, bit for bit
    train_steps(model, opt, 2, seed=5)
    train_steps(other, other_opt, 2, seed=5)
    for a, b in zip(model.parameters(), other.parameters()):
        assert torch.equal(a, b)


def test_corrupted_checkpoint_is_refused(tmp_path):
    model, opt = make()
    train_steps(model, opt, 1)
    path = tmp_path / "checkpoint.safetensors"
    save_checkpoint(path, model=model, optimizer=opt, step=1, extra={})
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF  # a bit flip inside the tensor data
    path.write_bytes(bytes(data))
    with pytest.raises(TicketlabError, match="checksum"):
        load_checkpoint(path, *make())
    path.write_bytes(bytes(data[: len(data) // 2]))  # truncated by a crash outside our atomic writes
    with pytest.raises(TicketlabError, match="damaged"):
        load_checkpoint(path, *make())


def test_checkpoint_that_does_not_fit_names_the_parameter_and_changes_nothing(tmp_path):
    model, opt = make()
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, model=model, optimizer=opt, step=0, extra={})
    wider, wider_opt = make(hidden=6)
    before = copy.deepcopy(wider.state_dict())
    with pytest.raises(TicketlabError, match=r"0\.weight is \(5, 4\) in the checkpoint but \(6, 4\)"):
        load_checkpoint(path, wider, wider_opt)
    assert all(torch.equal(before[k], v) for k, v in wider.state_dict().items())
    deeper = nn.Sequential(*make()[0], nn.Linear(2, 2))
    with pytest.raises(TicketlabError, match="missing 4.weight"):
        load_checkpoint(path, deeper, None)


def test_optimizer_of_another_kind_is_refused(tmp_path):
    model, opt = make(optimizer="sgd")
    train_steps(model, opt, 1)
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, model=model, optimizer=opt, step=1, extra={})
    small = nn.Linear(4, 5)
    with pytest.raises(TicketlabError):
        load_checkpoint(path, model, build_optimizer(small.parameters(), TrainConfig()))


def test_loaded_optimizer_state_does_not_alias_the_snapshot():
    model, opt = make()
    train_steps(model, opt, 2)
    snapshot = copy.deepcopy(opt.state_dict())
    frozen = copy.deepcopy(snapshot)
    other, other_opt = make()
    load_optimizer_state(other_opt, snapshot, where="test")
    train_steps(other, other_opt, 2)
    for idx in frozen["state"]:
        for key, value in frozen["state"][idx].items():
            assert torch.equal(snapshot["state"][idx][key], value), (idx, key)


def test_clear_checkpoint(tmp_path):
    model, opt = make()
    save_checkpoint(tmp_path / "checkpoint.safetensors", model=model, optimizer=opt, step=0, extra={})
    assert clear_checkpoint(tmp_path) is True
    assert clear_checkpoint(tmp_path) is False
    assert list(tmp_path.iterdir()) == []
