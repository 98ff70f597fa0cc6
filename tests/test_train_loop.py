"""The training loop on a small real task: resume and late resetting are bit-exact, hooks fire at
the right step, divergence stops with a clear message, history has the promised rows."""

import copy
import csv
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from ticketlab.config import TrainConfig
from ticketlab.data.bundle import DataBundle
from ticketlab.errors import TicketlabError
from ticketlab.train import CHECKPOINT_FILE, HISTORY_FILE, LevelRequest, LevelRun, read_history, train_level
from ticketlab.tasks.base import Task


class NoisyPoints(Dataset):
    """Random 8-d points in 3 classes; training items get Gaussian jitter drawn from torch's RNG."""

    def __init__(self, n: int, seed: int, augment: bool) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.y = torch.randint(0, 3, (n,), generator=gen)
        self.x = torch.randn(n, 8, generator=gen) + F.one_hot(self.y, 8).float() * 2
        self.augment = augment

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i):
        x = self.x[i]
        return (x + 0.1 * torch.randn_like(x) if self.augment else x), self.y[i]


class Classify(Task):
    name, metrics, headline, higher_is_better = "tiny", ("accuracy",), "accuracy", True

    def __init__(self) -> None:
        self.losses: list[float] = []

    def loss(self, model, batch, device):
        x, y = (t.to(device) for t in batch)
        ce = F.cross_entropy(model(x), y)
        reg = 1e-3 * sum(p.pow(2).sum() for p in model.parameters())
        self.losses.append(float((ce + reg).detach()))
        return {"loss": ce + reg, "loss_ce": ce, "loss_reg": reg}

    def evaluate(self, model, loader, device):
        right = total = 0
        for x, y in loader:
            right += int((model(x.to(device)).argmax(1) == y.to(device)).sum())
            total += len(y)
        return {"accuracy": right / total}


class KeepFirstLayerHalf:
    """A real enforcer for one mask: the first layer's weights with an odd flat index are pruned."""

    def __init__(self, model: nn.Module, crash_after: int | None = None) -> None:
        self.weight = model[0].weight
        self.mask = (torch.arange(self.weight.numel()) % 2 == 0).reshape(self.weight.shape)
        self.crash_after, self.steps = crash_after, 0

    def zero_weights(self):
        with torch.no_grad():
            self.weight.mul_(self.mask)

    def mask_grads(self):
        self.weight.grad.mul_(self.mask)

    def mask_optimizer_state(self, optimizer):
        for value in optimizer.state.get(self.weight, {}).values():
            if isinstance(value, torch.Tensor) and value.shape == self.weight.shape:
                value.mul_(self.mask)

    def after_step(self, optimizer):
        self.zero_weights()
        self.mask_optimizer_state(optimizer)
        self.steps += 1
        if self.crash_after is not None and self.steps == self.crash_after:
            raise KeyboardInterrupt("simulated kill")


def data(n_train: int = 50) -> DataBundle:
    return DataBundle(train=NoisyPoints(n_train, 0, True), val=NoisyPoints(30, 1, False),
                      num_classes=3, in_channels=1, image_size=8)


def model(dropout: float = 0.2) -> nn.Module:
    torch.manual_seed(123)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(dropout), nn.Linear(16, 3))


def config(**kw) -> TrainConfig:
    base = dict(duration="3ep", batch_size=8, eval_batch_size=16, lr=0.05, momentum=0.9, weight_decay=1e-4,
                warmup="4it", schedule="cosine", eval_every="5it", checkpoint_every="4it", seed=3, device="cpu")
    base.update(kw)
    return TrainConfig(**base)


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def without_seconds(rows):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_resume_after_a_kill_is_bit_exact(tmp_path, optimizer):
    cfg = config(optimizer=optimizer, lr=0.05 if optimizer == "sgd" else 0.01)
    ref_model = model()
    ref = train_level(LevelRequest(ref_model, Classify(), data(), cfg, workdir=tmp_path / "ref", enforcer=KeepFirstLayerHalf(ref_model)))
    assert ref.steps == ref.final_step == 21  # 3 epochs of ceil(50 / 8) = 7 steps

    killed = model()
    with pytest.raises(KeyboardInterrupt):  # dies in step 11: last checkpoint at 8, last eval at 10
        train_level(LevelRequest(killed, Classify(), data(), cfg, workdir=tmp_path / "run", enforcer=KeepFirstLayerHalf(killed, crash_after=11)))
    assert (tmp_path / "run" / CHECKPOINT_FILE).is_file()
    assert [r["step"] for r in read_history(tmp_path / "run" / HISTORY_FILE)] == [5, 10]

    resumed_model = model()
    task = Classify()
    resumed = train_level(LevelRequest(resumed_model, task, data(), cfg, workdir=tmp_path / "run", enforcer=KeepFirstLayerHalf(resumed_model)))
    assert len(task.losses) == 21 - 8  # only the steps after the checkpoint were trained
    assert same_weights(resumed_model, ref_model)
    assert resumed.metrics == ref.metrics
    assert without_seconds(resumed.history) == without_seconds(ref.history)
    assert without_seconds(read_history(tmp_path / "run" / HISTORY_FILE)) == without_seconds(ref.history)
    # the pruned weights stayed exactly zero
    assert torch.all(resumed_model[0].weight[~KeepFirstLayerHalf(resumed_model).mask] == 0)


def test_history_rows_columns_and_interval_averages(tmp_path):
    task = Classify()
    result = train_level(LevelRequest(model(), task, data(), config(duration="1ep", eval_every="3it"), workdir=tmp_path))
    assert [r["step"] for r in result.history] == [3, 6, 7]
    with open(tmp_path / HISTORY_FILE) as f:
        header = next(csv.reader(f))
    assert header == ["step", "epoch", "loss", "loss_ce", "loss_reg", "accuracy", "lr", "seconds"]
    assert read_history(tmp_path / HISTORY_FILE) == result.history
    assert result.history[0]["loss"] == pytest.approx(sum(task.losses[:3]) / 3)
    assert result.history[2]["loss"] == pytest.approx(task.losses[6])
    assert result.history[1]["epoch"] == pytest.approx(6 / 7)
    assert result.metrics == {"accuracy": result.history[-1]["accuracy"]}
    assert result.history[0]["lr"] == pytest.approx(0.05 * 3 / 4)  # step index 2 of a 4-step warmup
    assert all(r["seconds"] >= 0 for r in result.history)


def test_late_reset_continues_schedule_and_data_order(tmp_path):
    """Training from the step-9 state with start_step=9 reproduces the rest of the dense run exactly."""
    cfg = config()
    points = {}

    def snapshot(step, m, opt):
        points["weights"] = copy.deepcopy(m.state_dict())
        points["optimizer"] = copy.deepcopy(opt.state_dict())

    dense = model(dropout=0.0)  # dropout draws from the global RNG, which a late reset reseeds
    ref = train_level(LevelRequest(dense, Classify(), data(), cfg, workdir=tmp_path / "dense", run=LevelRun(rewind_steps={9}, on_rewind=snapshot)))

    late = model(dropout=0.0)
    late.load_state_dict(points["weights"])
    task = Classify()
    result = train_level(LevelRequest(late, task, data(), cfg, workdir=tmp_path / "late", run=LevelRun(start_step=9, optimizer_state=points["optimizer"])))
    assert len(task.losses) == result.steps == 21 - 9
    assert same_weights(late, dense)
    later = [r for r in without_seconds(ref.history) if r["step"] > 9]
    assert [r["step"] for r in result.history] == [r["step"] for r in later] == [10, 15, 20, 21]
    assert without_seconds(result.history)[1:] == later[1:]
    # the first row averages the losses of step 10 only (the dense run's row covers steps 6-10)
    assert result.history[0]["loss"] == pytest.approx(task.losses[0])
    assert {k: result.history[0][k] for k in ("epoch", "accuracy", "lr")} == \
        {k: later[0][k] for k in ("epoch", "accuracy", "lr")}


def test_on_rewind_sees_the_weights_after_exactly_that_many_steps(tmp_path):
    cfg = config(schedule="constant", warmup="0it")
    seen = {}

    def hook(step, m, opt):
        seen.setdefault("steps", []).append(step)
        seen.setdefault("calls", []).append(copy.deepcopy(m.state_dict()))
        seen["opt_steps"] = sum(int(s["momentum_buffer"] is not None) for s in opt.state.values())

    train_level(LevelRequest(model(), Classify(), data(), cfg, workdir=tmp_path / "a",
                             run=LevelRun(rewind_steps={5, 7}, on_rewind=hook)))
    assert seen["steps"] == [5, 7]
    for at, seen_state in zip((5, 7), seen["calls"]):  # one run, several rewind points
        short = model()
        train_level(LevelRequest(short, Classify(), data(), config(schedule="constant", warmup="0it",
                                                                   duration=f"{at}it"), workdir=tmp_path / f"b{at}"))
        assert all(torch.equal(seen_state[k], v) for k, v in short.state_dict().items())

    initial = model()
    at_zero = []
    train_level(LevelRequest(model(), Classify(), data(), config(duration="2it"), workdir=tmp_path / "c", run=LevelRun(
        rewind_steps={0}, on_rewind=lambda step, m, opt: at_zero.append(copy.deepcopy(m.state_dict())))))
    assert len(at_zero) == 1 and all(torch.equal(at_zero[0][k], v) for k, v in initial.state_dict().items())


class DivergesAtThirdStep(Classify):
    def loss(self, model, batch, device):
        terms = super().loss(model, batch, device)
        if len(self.losses) == 3:
            terms["loss_ce"] = terms["loss_ce"] * math.nan
            terms["loss"] = terms["loss_ce"] + terms["loss_reg"]
        return terms


def test_nan_loss_stops_with_step_and_term_and_keeps_the_checkpoint(tmp_path):
    with pytest.raises(TicketlabError, match=r"step 3 of 21: loss term 'loss_ce' is nan.*checkpoint") as info:
        train_level(LevelRequest(model(), DivergesAtThirdStep(), data(), config(checkpoint_every="2it"), workdir=tmp_path))
    assert "\n" not in str(info.value)
    assert (tmp_path / CHECKPOINT_FILE).is_file()


def test_resume_with_a_different_duration_is_refused(tmp_path):
    m = model()
    with pytest.raises(KeyboardInterrupt):
        train_level(LevelRequest(m, Classify(), data(), config(), workdir=tmp_path, enforcer=KeepFirstLayerHalf(m, crash_after=5)))
    with pytest.raises(TicketlabError, match="total_steps=21.*28"):
        train_level(LevelRequest(model(), Classify(), data(), config(duration="4ep"), workdir=tmp_path))


def test_same_seed_same_result_and_amp_is_ignored_on_cpu(tmp_path):
    a, b = model(), model()
    train_level(LevelRequest(a, Classify(), data(), config(duration="6it", eval_every="0it"), workdir=tmp_path / "a"))
    train_level(LevelRequest(b, Classify(), data(), config(duration="6it", eval_every="2it", amp=True), workdir=tmp_path / "b"))
    assert same_weights(a, b)  # evaluation frequency does not change training


def test_cuda_asked_for_without_cuda_is_a_user_error(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(TicketlabError, match="no CUDA device"):
        train_level(LevelRequest(model(), Classify(), data(), config(device="cuda"), workdir=tmp_path))


def test_nothing_left_to_train_still_evaluates(tmp_path):
    result = train_level(LevelRequest(model(), Classify(), data(), config(duration="5it"), workdir=tmp_path, run=LevelRun(start_step=5)))
    assert result.steps == 0 and result.final_step == 5
    assert [r["step"] for r in result.history] == [5] and "accuracy" in result.metrics
    assert "loss" not in result.history[0]
