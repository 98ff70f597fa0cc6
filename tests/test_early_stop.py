"""The early-stopping step: the evaluation of minimum validation loss, earliest on ties."""

from ticketlab.analysis.early_stop import early_stop, early_stop_of
from ticketlab.train.history import write_history


def test_minimum_validation_loss_and_its_metrics(tmp_path):
    rows = [{"step": 100, "epoch": 0.1, "loss": 0.9, "accuracy": 0.70, "val_loss": 0.80, "lr": 1e-3},
            {"step": 200, "epoch": 0.2, "loss": 0.5, "accuracy": 0.81, "val_loss": 0.41, "lr": 1e-3},
            {"step": 300, "epoch": 0.3, "loss": 0.4, "accuracy": 0.83, "val_loss": 0.41, "lr": 1e-3},
            {"step": 400, "epoch": 0.4, "loss": 0.3, "accuracy": 0.82, "val_loss": 0.47, "lr": 1e-3}]
    stop = early_stop(rows)
    assert (stop.step, stop.val_loss, stop.metrics["accuracy"], stop.last_step) == (200, 0.41, 0.81, 400)
    write_history(tmp_path / "history.csv", rows)
    assert early_stop_of(tmp_path) == stop  # the same through the file
    assert early_stop([{"step": 5, "loss": 1.0}]) is None  # no validation loss logged
    assert early_stop_of(tmp_path / "missing") is None
