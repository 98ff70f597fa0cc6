"""history.csv: column order, exact round trip, truncation for resume."""

from ticketlab.train import read_history, write_history
from ticketlab.train.history import columns, drop_after, format_history


ROWS = [
    {"step": 3, "epoch": 0.42857142857142855, "loss": 1.1, "loss_ce": 1.0, "accuracy": 0.1, "lr": 0.1, "seconds": 0.5},
    {"step": 6, "epoch": 0.8571428571428571, "loss": 0.3333333333333333, "loss_ce": 0.3, "accuracy": 0.2,
     "lr": 0.01, "seconds": 1.25},
]


def test_columns_keep_step_first_and_timing_last():
    rows = [{"lr": 1.0, "seconds": 2.0, "step": 1, "epoch": 0.5, "loss": 3.0}, {"step": 2, "extra_metric": 4.0}]
    assert columns(rows) == ["step", "epoch", "loss", "extra_metric", "lr", "seconds"]


def test_round_trip_is_exact(tmp_path):
    path = tmp_path / "history.csv"
    write_history(path, ROWS)
    assert path.read_text().splitlines()[0] == "step,epoch,loss,loss_ce,accuracy,lr,seconds"
    assert read_history(path) == ROWS
    assert not list(tmp_path.glob(".tmp-*"))


def test_missing_cells_read_back_as_none(tmp_path):
    path = tmp_path / "h.csv"
    write_history(path, [{"step": 0, "accuracy": 0.5}, {"step": 1, "loss": 2.0, "accuracy": 0.6}])
    assert read_history(path)[0] == {"step": 0, "accuracy": 0.5, "loss": None}


def test_drop_after_keeps_rows_up_to_the_step():
    assert drop_after(ROWS, 5) == ROWS[:1]
    assert drop_after(ROWS, 6) == ROWS
    assert format_history([]) == "\n"
