"""A finished level (or branch) opened from its files: the one "find run → build experiment → load
weights → check the mask" sequence that `eval`, `info`, `export` and `branch` share.

The checks are those a level must pass to be trusted: its run dir's config builds the experiment,
and the level's files pass `level_files.check_level` against that model (mask, final and rewind
weights readable and fitting the model, every pruned weight exactly 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ticketlab.errors import TicketlabError
from ticketlab.lottery.experiment import Experiment, build_experiment
from ticketlab.sparsity.level_files import check_level
from ticketlab.rundir import CONFIG_FILE, RunDir


@dataclass
class OpenedLevel:
    level_dir: Path
    run: RunDir
    experiment: Experiment  # its model holds the level's final weights
    mask: dict[str, torch.Tensor]


def find_run(level_dir: Path) -> RunDir:
    """The run dir holding `level_dir` (a level, or a branch under a level)."""
    level_dir = Path(level_dir)
    for candidate in (level_dir.parent, level_dir.parent.parent):
        if (candidate / CONFIG_FILE).is_file():
            real = level_dir.resolve()
            if not real.is_relative_to(candidate.resolve()):  # e.g. a level symlinked in from elsewhere
                raise TicketlabError(f"{level_dir}: resolves to {real}, outside its run dir {candidate}; "
                                     "a level's files must live in the run dir that describes them")
            return RunDir(candidate)
    raise TicketlabError(f"{level_dir}: expected RUN_DIR/level_NN (or a branch under it) with RUN_DIR/{CONFIG_FILE}")


def open_level(level_dir: Path) -> OpenedLevel:
    """Rebuild the run's experiment with the level's final weights and its checked mask."""
    level_dir = Path(level_dir)
    run = find_run(level_dir)
    exp = build_experiment(run.data_config())
    files = check_level(level_dir, exp.model.state_dict(), exp.scope)
    exp.model.load_state_dict(files.final)
    return OpenedLevel(level_dir, run, exp, files.mask)
