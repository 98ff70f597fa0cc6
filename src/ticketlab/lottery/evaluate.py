"""Re-evaluate a finished level (or branch) from its files: `ticketlab eval RUN_DIR/level_NN`.

The model, data split and task are rebuilt from the run's `config.yaml`, so the numbers are the
same ones `find` wrote into `metrics.json` (on the same device and software versions).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
from torch.utils.data import DataLoader

from ticketlab.lottery.opened import open_level


def evaluate_level(level_dir: Path, *, save_detections: Optional[Path] = None) -> dict[str, float]:
    """The level's metrics on the validation split, after the checks of `open_level`."""
    exp = open_level(Path(level_dir)).experiment
    loader = DataLoader(exp.data.val, batch_size=exp.cfg.train.eval_batch_size, shuffle=False,
                        collate_fn=exp.data.collate_fn)
    exp.model.eval()
    if save_detections is not None and not exp.task.saves_detections:
        exp.task.save_detections(Path(save_detections))  # says the task has none, before evaluating
    with torch.no_grad():
        metrics = exp.task.evaluate(exp.model, loader, exp.device)
    if save_detections is not None:
        exp.task.save_detections(Path(save_detections))
    return metrics
