"""A finished level (or branch) opened from its files: the one "find run → build experiment → load
weights → check the mask" sequence that `eval`, `info`, `export` and `branch` share.

The checks are those a level must pass to be trusted: its run dir's config builds the experiment,
`final.safetensors` fits the model (names, shapes), `mask.safetensors` fits the masked parameters
(names, shapes, dtype, readable bytes; `sparsity.load_mask`), and every weight the mask prunes is
exactly 0 in the final weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ticketlab.errors import TicketlabError
from ticketlab.lottery.experiment import Experiment, build_experiment, load_state
from ticketlab.rundir import CONFIG_FILE, FINAL_FILE, MASK_FILE, RunDir
from ticketlab.sparsity import load_mask


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
    exp = build_experiment(run.load_config())
    model = exp.model
    model.load_state_dict(load_state(level_dir / FINAL_FILE, model))
    params = dict(model.named_parameters())
    mask = load_mask(level_dir / MASK_FILE, {n: tuple(params[n].shape) for n in exp.scope})
    for name, kept in mask.items():
        if bool((params[name].detach()[~kept.to(params[name].device)] != 0).any()):
            raise TicketlabError(f"{level_dir / FINAL_FILE}: {name} is nonzero where {level_dir / MASK_FILE} "
                                 "prunes it (not a finished ticket)")
    return OpenedLevel(level_dir, run, exp, mask)
