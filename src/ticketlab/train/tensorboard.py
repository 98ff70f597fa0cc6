"""TensorBoard scalars of one level: every step's loss terms and learning rate, every evaluation's
metrics, in `RUN_DIR/tensorboard/level_NN` (`tensorboard --logdir RUN_DIR/tensorboard`).

The CSV history stays the record a run is judged by; this is for watching a run live. A resumed
level reopens its log with `purge_step` at the checkpoint's step, so the steps it redoes replace the
ones logged after that checkpoint instead of appearing twice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional

from torch.utils.tensorboard import SummaryWriter


class ScalarLog:
    """A SummaryWriter, or nothing when `log_dir` is None (tensorboard off, or not rank 0)."""

    def __init__(self, log_dir: Optional[Path], start_step: int) -> None:
        self._writer = None
        if log_dir is not None:
            log_dir.mkdir(parents=True, exist_ok=True)
            self._writer = SummaryWriter(str(log_dir), purge_step=start_step)

    def train(self, step: int, terms: Mapping[str, float], lr: float) -> None:
        if self._writer is not None:
            for name, value in terms.items():
                self._writer.add_scalar(f"train/{name}", value, step)
            self._writer.add_scalar("train/lr", lr, step)

    def evaluation(self, step: int, metrics: Mapping[str, float]) -> None:
        if self._writer is not None:
            for name, value in metrics.items():
                self._writer.add_scalar(f"val/{name}", value, step)
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
