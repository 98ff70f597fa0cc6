"""End to end on real data: `ticketlab find` on Debian's Fashion-MNIST files, as the README says.

A few hundred steps of IMP with the lottery-ticket config (LeNet-300-100, per-group rates): the
run dir holds every level, the layer-wise per-group rates show in the masks, the early-stopping
step is read from the periodic validation losses and drawn in the report, and training learned (accuracy well above the
10% of chance). Under CI (`CI=true`) a missing data set fails instead of skipping.
"""

import json

import pytest

from ticketlab.analysis.early_stop import early_stop_of
from ticketlab.analysis.report import write_report
from ticketlab.cli import main

from test_data_idx import real_fashion_mnist


@pytest.mark.slow
def test_find_on_real_fashion_mnist(tmp_path, capsys):
    root = real_fashion_mnist()
    out = tmp_path / "run"
    rc = main(["find", "configs/fashion_mnist_lenet.yaml", "--out", str(out), "--set", f"data.root={root}",
               "--set", "train.duration=300it", "--set", "train.eval_every=100it", "--set", "prune.levels=2"])
    assert rc == 0, capsys.readouterr().err
    metrics = [json.loads((out / f"level_{k:02d}" / "metrics.json").read_text()) for k in range(3)]
    assert [m["steps"] for m in metrics] == [300, 300, 300]
    # layer-wise: hidden layers (300·784 + 100·300 weights) lose 20%, the output layer (1,000) 10% per level
    kept = 0.8 * 0.8 * (300 * 784 + 100 * 300) + 0.9 * 0.9 * 1000
    assert abs(metrics[2]["kept_scope"] - kept) <= 3  # rounding per tensor and level
    assert all(m["accuracy"] > 0.7 for m in metrics)  # 300 steps of 60 real images: far above chance
    stop = early_stop_of(out / "level_02")
    assert stop is not None and stop.step in (100, 200, 300) and stop.last_step == 300
    # the report draws the early-stopping step of every level
    result = write_report([out], tmp_path / "report")
    rows = (tmp_path / "report" / "early_stopping.csv").read_text().splitlines()
    assert len(rows) == 1 + 3 and (tmp_path / "report" / "early_stopping.png").is_file()
    assert "Early stopping: do tickets learn faster?" in result.index.read_text()
