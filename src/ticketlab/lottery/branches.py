"""Controls on a finished level: is it the mask, the initialisation, or both that make the ticket?

Each branch trains once more under the level's training schedule and writes the same contract files
as a level, under `level_NN/branch_<name>/`:

- `reinit`: the level's mask, a freshly drawn random initialisation (Frankle & Carbin's control);
- `random_mask`: the level's per-tensor kept counts at random positions, from the rewind point;
- `complement`: exactly the scope weights the level pruned, from the rewind point (paper 002);
- `perturb`: the mask with a fraction of its ones and the same number of zeros flipped, from the
  rewind point (paper 002 §5.2), so sparsity is unchanged;
- `early_bird` (level 1 only): the early-bird mask drawn at `--fraction` of dense training
  (`early_bird.py`, paper 001 Fig. 2f), from the rewind point.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from ticketlab.errors import TicketlabError
from ticketlab.lottery.early_bird import draw_at
from ticketlab.lottery.imp import rewind_source
from ticketlab.lottery.level import TicketStart, train_ticket
from ticketlab.lottery.lock import run_lock
from ticketlab.lottery.opened import open_level
from ticketlab.registry import BRANCHES
from ticketlab.rundir import METRICS_FILE, RunDir
from ticketlab.sparsity import complement, load_mask, perturb, random_mask_like
from ticketlab.train.loop import LevelRun



@dataclass(frozen=True)
class Branch:
    """A registered control experiment (`ticketlab branch LEVEL NAME`)."""

    help: str
    fraction: bool = False  # takes --fraction (and its directory name carries it)


for _name, _branch in {
    "reinit": Branch("same mask, a newly drawn random initialisation"),
    "random_mask": Branch("a random mask of the same per-tensor sparsity, same start weights"),
    "complement": Branch("the mask's complement (the pruned weights kept)"),
    "perturb": Branch("flip --fraction of the mask's ones and as many zeros", fraction=True),
    "early_bird": Branch("the early-bird mask drawn at --fraction of dense training (level_01)", fraction=True),
}.items():
    BRANCHES.register(_name, _branch)


def branch_dir_name(name: str, fraction: Optional[float]) -> str:
    return f"branch_{name}_{fraction:g}" if BRANCHES.get(name).fraction else f"branch_{name}"


def parse_level_dir(level_dir: Path) -> tuple[RunDir, int]:
    level_dir = Path(level_dir)
    suffix = level_dir.name.removeprefix("level_")
    if not level_dir.name.startswith("level_") or not suffix.isdigit():
        raise TicketlabError(f"{level_dir}: expected a level directory such as RUN_DIR/level_03")
    run = RunDir(level_dir.parent)
    level = int(suffix)
    if not run.is_done(level):
        raise TicketlabError(f"{level_dir}: level is not finished (no {METRICS_FILE}); run `ticketlab find` first")
    return run, level


def run_branch(level_dir: Path, name: str, *, fraction: Optional[float] = None,
               seed: Optional[int] = None) -> tuple[Path, dict]:
    """Train branch `name` of a finished level; returns its directory and metrics."""
    if BRANCHES.get(name).fraction:
        if fraction is None or not 0.0 < fraction <= 1.0:
            raise TicketlabError(f"branch {name}: --fraction must be given, in (0, 1]")
    elif fraction is not None:
        with_fraction = [n for n, b in BRANCHES.items() if b.fraction]
        raise TicketlabError(f"branch {name}: --fraction only applies to {' and '.join(with_fraction)}")
    run, level = parse_level_dir(level_dir)
    opened = open_level(Path(level_dir))
    exp, mask, cfg = opened.experiment, opened.mask, opened.experiment.cfg
    shapes = {n: tuple(m.shape) for n, m in mask.items()}
    seed = cfg.train.seed + 1 if seed is None else seed
    generator = torch.Generator().manual_seed(seed)
    if name in ("complement", "perturb", "random_mask") and level == 0:
        raise TicketlabError(f"branch {name}: level_00 is dense; pick a pruned level (level_01 or later)")
    if name == "early_bird" and level != 1:
        raise TicketlabError(f"branch early_bird: early-bird masks are drawn for level 1; give {run.level_dir(1)}")

    start, opt_state = rewind_source(exp, run)
    extra: dict = {}
    if name == "reinit":
        start = {k: v.detach() for k, v in exp.fresh_model(seed).state_dict().items()}
        opt_state = None
    elif name == "random_mask":
        mask = random_mask_like(mask, generator)
    elif name == "early_bird":
        step, path = draw_at(run.level_dir(0), fraction)
        mask = load_mask(path, shapes)
        extra = {"early_bird_step": step}
    elif name == "complement":
        mask = complement(mask)
    else:
        mask = perturb(mask, fraction, generator)

    out = Path(level_dir) / branch_dir_name(name, fraction)
    with run_lock(run.root):  # one writer per run dir: not beside a `find` or another branch
        identity = {"level": level, "branch": name, "branch_seed": seed,
                    **({"fraction": fraction} if fraction is not None else {}), **extra}
        metrics = train_ticket(exp, TicketStart(out, mask, start, identity), LevelRun(
            start_step=exp.rewind_step, optimizer_state=opt_state, desc=f"level {level} {name}"))
    return out, metrics
