"""A task registered from this file alone (no edit anywhere in ticketlab) is trained by `find` and
shows up in `report`, `sweep` and `export` — with a headline where *lower* is better, so the
matching verdicts must follow the direction the task declares."""

from __future__ import annotations

import csv
import json
from dataclasses import replace

import pytest
import torch.nn.functional as F
import yaml
from safetensors.torch import load_file
from torch.utils.data import Dataset

from ticketlab.analysis.runs import Stat, is_matching
from ticketlab.cli import main
from ticketlab.data.bundle import CLASS_LABELS
from ticketlab.lottery.study import load_study
from ticketlab.models.spec import CLASSIFIER
from ticketlab.registry import TASKS
from ticketlab.tasks.base import Task


class Parity(Dataset):
    """A digits split relabelled even (0) / odd (1)."""

    def __init__(self, base: Dataset) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i):
        image, label = self.base[i]
        return image, int(label) % 2


class ParityTask(Task):
    name = "toy_parity"
    metrics = ("parity_error",)
    headline = "parity_error"
    higher_is_better = False
    data_needs = frozenset({CLASS_LABELS})
    model_kinds = (CLASSIFIER,)

    @classmethod
    def adapt_data(cls, data, cfg):
        return replace(data, train=Parity(data.train), val=Parity(data.val), num_classes=2, class_names=["even", "odd"])

    def loss(self, model, batch, device):
        images, labels = (t.to(device) for t in batch)
        return {"loss": F.cross_entropy(model(images), labels)}

    def evaluate(self, model, loader, device):
        wrong = total = 0
        for images, labels in loader:
            wrong += int((model(images.to(device)).argmax(1) != labels.to(device)).sum())
            total += len(labels)
        return {"parity_error": wrong / total}


@pytest.fixture
def toy_task():
    TASKS.register(ParityTask.name, ParityTask)
    yield ParityTask
    TASKS.unregister(ParityTask.name)


def test_lower_is_better_verdicts_hand_computed():
    dense = Stat(mean=0.20, std=0.02, n=3)
    assert is_matching(0.21, dense, higher_is_better=False)       # within dense + 1 std
    assert not is_matching(0.23, dense, higher_is_better=False)
    assert not is_matching(0.17, dense, higher_is_better=True)    # the same numbers, the other direction
    assert is_matching(0.19, dense, higher_is_better=True)


def test_a_task_registered_here_runs_through_find_report_sweep_export(tmp_path, capsys, toy_task):
    config = tmp_path / "parity.yaml"
    config.write_text(yaml.safe_dump({
        "task": "toy_parity", "model": {"family": "lenet_300_100", "width": 0.1}, "data": {"format": "digits"},
        "train": {"optimizer": "adam", "lr": 0.003, "batch_size": 64, "duration": "6it", "eval_every": "6it",
                  "checkpoint_every": "6it", "tensorboard": False},
        "prune": {"rate": 0.5, "levels": 1}}))
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump({"config": str(config), "grid": {"train.seed": [0]}}))
    run = tmp_path / "study" / "cells" / load_study(study).cells()[0].name

    assert main(["find", str(config), "--out", str(run)]) == 0
    assert json.loads((run / "task.json").read_text()) == {
        "task": "toy_parity", "headline": "parity_error", "higher_is_better": False, "metrics": ["parity_error"]}
    levels = [json.loads((run / f"level_0{k}" / "metrics.json").read_text()) for k in (0, 1)]
    assert all(0.0 <= lv["parity_error"] <= 1.0 for lv in levels)
    # the final layer has two outputs: adapt_data's class count reached the model
    assert load_file(str(run / "level_00" / "final.safetensors"))["fc.weight"].shape[0] == 2

    assert main(["sweep", str(study), "--out", str(tmp_path / "study")]) == 0
    with open(tmp_path / "study" / "aggregate.csv") as f:
        row = list(csv.DictReader(f))[1]
    expected = levels[1]["parity_error"] <= levels[0]["parity_error"]  # one seed: no spread
    assert row["headline"] == "parity_error" and row["matching"] == ("yes" if expected else "no")

    assert main(["report", str(run), "--out", str(tmp_path / "report")]) == 0
    page = (tmp_path / "report" / "index.html").read_text()
    assert (tmp_path / "report" / "parity_error_vs_sparsity.png").is_file()
    assert "≤ dense mean + 1 std (lower is better)" in page

    capsys.readouterr()
    assert main(["export", str(run / "level_01"), "--format", "onnx", "--out", str(tmp_path / "t.onnx")]) == 0
    assert "checked with onnxruntime" in capsys.readouterr().out
