"""Learning-rate schedule shapes, step parsing and optimizer construction."""

import math

import pytest
import torch

from ticketlab.config import TrainConfig
from ticketlab.errors import TicketlabError
from ticketlab.train import LrSchedule, apply_lr, build_optimizer, lr_factor, plan_level, schedule_from_config


def test_warmup_rises_linearly_to_one():
    f = [lr_factor(s, total=100, warmup=4) for s in range(6)]
    assert f == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]


def test_no_warmup_is_constant():
    assert all(lr_factor(s, total=10) == 1.0 for s in range(12))


def test_multistep_multiplies_by_gamma_at_each_milestone():
    f = lambda s: lr_factor(s, total=30, schedule="multistep", milestones=[10, 20], gamma=0.1)  # noqa: E731
    assert f(0) == 1.0 and f(9) == 1.0
    assert f(10) == pytest.approx(0.1) and f(19) == pytest.approx(0.1)
    assert f(20) == pytest.approx(0.01) and f(29) == pytest.approx(0.01)


def test_multistep_with_warmup_multiplies_both():
    assert lr_factor(1, total=30, warmup=4, schedule="multistep", milestones=[0], gamma=0.5) == 0.5 * 0.5


def test_cosine_endpoints_and_midpoint():
    f = lambda s: lr_factor(s, total=110, warmup=10, schedule="cosine")  # noqa: E731
    assert f(0) == pytest.approx(0.1)  # warmup
    assert f(10) == 1.0
    assert f(60) == pytest.approx(0.5)
    assert f(110) == pytest.approx(0.0, abs=1e-12)
    values = [f(s) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_unknown_schedule_is_a_user_error():
    with pytest.raises(TicketlabError, match="train.schedule"):
        lr_factor(0, total=1, schedule="linear")


def test_steps_in_epochs_use_steps_per_epoch():
    cfg = TrainConfig(duration="2ep", batch_size=8, warmup="3it", schedule="multistep",
                      milestones=["1ep", "10it"], eval_every="1ep", checkpoint_every="5it")
    plan = plan_level(cfg, num_train=50)  # ceil(50 / 8) = 7 steps per epoch, last batch partial
    assert plan.steps_per_epoch == 7 and plan.total == 14
    assert plan.eval_every == 7 and plan.checkpoint_every == 5
    assert plan.schedule == LrSchedule(total=14, warmup=3, schedule="multistep", milestones=(7, 10), gamma=0.1)
    assert schedule_from_config(cfg, 7) == plan.schedule


def test_bad_step_string_names_the_key():
    cfg = TrainConfig(duration="2 epochs")
    with pytest.raises(TicketlabError, match="train.duration"):
        plan_level(cfg, num_train=10)


def test_empty_training_split_is_an_error():
    with pytest.raises(TicketlabError, match="empty"):
        plan_level(TrainConfig(), num_train=0)


def test_build_optimizers():
    params = [torch.nn.Parameter(torch.zeros(3))]
    sgd = build_optimizer(params, TrainConfig(optimizer="sgd", lr=0.2, momentum=0.8, nesterov=True, weight_decay=1e-4))
    assert isinstance(sgd, torch.optim.SGD)
    g = sgd.param_groups[0]
    assert (g["lr"], g["initial_lr"], g["momentum"], g["nesterov"], g["weight_decay"]) == (0.2, 0.2, 0.8, True, 1e-4)
    assert type(build_optimizer(params, TrainConfig(optimizer="adam"))) is torch.optim.Adam
    adamw = build_optimizer(params, TrainConfig(optimizer="adamw", weight_decay=0.05))
    assert type(adamw) is torch.optim.AdamW and adamw.param_groups[0]["weight_decay"] == 0.05
    with pytest.raises(TicketlabError, match="momentum"):
        build_optimizer(params, TrainConfig(nesterov=True, momentum=0.0))


def test_apply_lr_scales_each_groups_peak():
    a, b = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    opt = build_optimizer([{"params": [a]}, {"params": [b], "lr": 0.01}], TrainConfig(lr=0.1))
    lr = apply_lr(opt, LrSchedule(total=10, warmup=4), 1)
    assert lr == pytest.approx(0.05)
    assert opt.param_groups[1]["lr"] == pytest.approx(0.005)
    assert math.isclose(apply_lr(opt, LrSchedule(total=10, warmup=4), 7), 0.1)


def test_poly_follows_its_formula_after_warmup():
    total, warmup, power = 120, 20, 0.9
    for step in (20, 35, 70, 119, 120):
        expected = (1 - (step - warmup) / (total - warmup)) ** power
        assert lr_factor(step, total=total, warmup=warmup, schedule="poly", power=power) == pytest.approx(expected)
    assert lr_factor(0, total=total, warmup=warmup, schedule="poly") == pytest.approx(1 / warmup)
    assert lr_factor(60, total=100, schedule="poly", power=2.0) == pytest.approx(0.4**2)


def test_poly_and_cosine_end_at_the_floor():
    # paper 002's YOLOv4: cosine from 1e-4 to 1e-6 → floor 0.01
    cos = [lr_factor(s, total=50, schedule="cosine", floor=0.01) for s in range(51)]
    assert cos[0] == 1.0 and cos[-1] == pytest.approx(0.01) and cos[25] == pytest.approx(0.01 + 0.99 * 0.5)
    assert lr_factor(25, total=50, schedule="poly", power=1.0, floor=0.2) == pytest.approx(0.2 + 0.8 * 0.5)


def test_config_poly_power_and_lr_min_reach_the_schedule():
    cfg = TrainConfig(duration="100it", lr=0.005, lr_min=0.0005, schedule="poly", power=0.5)
    sched = schedule_from_config(cfg, steps_per_epoch=10)
    assert sched.factor(100) == pytest.approx(0.1)
    assert sched.factor(75) == pytest.approx(0.1 + 0.9 * 0.25**0.5)


def test_lr_min_above_lr_is_a_config_error():
    from ticketlab.config import load_config

    with pytest.raises(TicketlabError, match="train.lr_min"):
        load_config(None, ["train.lr=0.01", "train.lr_min=0.1"])
