"""Re-evaluate a finished level (or branch) from its files: `ticketlab eval RUN_DIR/level_NN`.

The model, data split and task are rebuilt from the run's `config.yaml`, so the numbers are the
same ones `find` wrote into `metrics.json` (on the same device and software versions).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
from torch.utils.data import DataLoader

from ticketlab.errors import TicketlabError
from ticketlab.lottery.experiment import build_experiment, load_state
from ticketlab.rundir import RunDir


def find_run(level_dir: Path) -> RunDir:
    """The run dir holding `level_dir` (a level, or a branch under a level)."""
    level_dir = Path(level_dir)
    for candidate in (level_dir.parent, level_dir.parent.parent):
        if (candidate / "config.yaml").is_file():
            return RunDir(candidate)
    raise TicketlabError(f"{level_dir}: expected RUN_DIR/level_NN (or a branch under it) with RUN_DIR/config.yaml")


def evaluate_level(level_dir: Path, *, save_detections: Optional[Path] = None) -> dict[str, float]:
    level_dir = Path(level_dir)
    run = find_run(level_dir)
    exp = build_experiment(run.load_config())
    exp.model.load_state_dict(load_state(level_dir / "final.safetensors", exp.model))
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
