"""Controls on a finished level: is it the mask, the initialisation, or both that make the ticket?

Each branch trains once more under the level's training schedule and writes the same contract files
as a level, under `level_NN/branch_<name>/`:

- `reinit`: the level's mask, a freshly drawn random initialisation (Frankle & Carbin's control);
- `random_mask`: the level's per-tensor kept counts at random positions, from the rewind point;
- `complement`: exactly the scope weights the level pruned, from the rewind point (paper 002);
- `perturb`: the mask with a fraction of its ones and the same number of zeros flipped, from the
  rewind point (paper 002 §5.2), so sparsity is unchanged;
- `early_bird` (level 1 only): the early-bird mask drawn at `--fraction` of dense training
  (`early_bird.py`, paper 001 Fig. 2f), from the rewind point;
- `shuffle_layerwise`: Frankle et al.'s (ICLR 2021) name for `random_mask` — each tensor's mask
  shuffled within the tensor — kept as its own branch so pruning-at-init studies read as the paper;
- `invert`: the level's own selection with its ranking reversed, the same counts kept (Frankle et
  al. 2021): for pruning at init the lowest-scored weights at the rewind point, for magnitude IMP
  the largest-magnitude weights of the previous level's alive ones removed instead of the smallest;
- `instability`, `interpolate_next`: linear mode connectivity (`instability.py`).

Mask controls start from the weights the level started from: the rewind point, or with
`prune.rewind_mode: lr` the previous level's final weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import torch

from ticketlab.config import check_seed
from ticketlab.errors import TicketlabError
from ticketlab.lottery.at_init import at_init_mask
from ticketlab.lottery.early_bird import draw_at
from ticketlab.lottery.experiment import Experiment, load_state
from ticketlab.lottery.imp import level_start, rewind_source
from ticketlab.lottery.instability import INSTABILITY, INTERPOLATE_NEXT, run_instability, run_interpolate_next
from ticketlab.lottery.level import TicketStart, train_ticket
from ticketlab.lottery.lock import run_lock
from ticketlab.lottery.opened import open_level
from ticketlab.registry import BRANCHES
from ticketlab.rundir import FINAL_FILE, MASK_FILE, METRICS_FILE, RunDir
from ticketlab.stop import StopFlag
from ticketlab.sparsity import load_mask
from ticketlab.sparsity.pruning_at_init import get_strategy
from ticketlab.train.loop import LevelRun



@dataclass(frozen=True)
class Branch:
    """A registered control experiment (`ticketlab branch LEVEL NAME`)."""

    help: str
    fraction: bool = False  # takes --fraction (and its directory name carries it)
    on_path: bool = False  # evaluates a linear path: takes --points and --bn-batches, trains no single ticket
    pruned: bool = False  # needs a pruned level (level_01 or later)


for _name, _branch in {
    "reinit": Branch("same mask, a newly drawn random initialisation"),
    "random_mask": Branch("a random mask of the same per-tensor sparsity, same start weights", pruned=True),
    "shuffle_layerwise": Branch("each tensor's mask shuffled within the tensor (Frankle et al. 2021; = random_mask)",
                                pruned=True),
    "complement": Branch("the mask's complement (the pruned weights kept)", pruned=True),
    "perturb": Branch("flip --fraction of the mask's ones and as many zeros", fraction=True, pruned=True),
    "invert": Branch("the level's selection with its ranking reversed, same counts (Frankle et al. 2021)",
                     pruned=True),
    "early_bird": Branch("the early-bird mask drawn at --fraction of dense training (level_01)", fraction=True),
    INSTABILITY: Branch("--copies trained with different data orders; error barrier on the line between them",
                        on_path=True),
    INTERPOLATE_NEXT: Branch("error barrier on the line from this level's weights to the next level's",
                             on_path=True),
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


def inverted_mask(exp: Experiment, run: RunDir, level: int, shapes: dict) -> dict[str, torch.Tensor]:
    """Level `level`'s mask chosen with its strategy's ranking reversed (the `invert` branch)."""
    strategy = get_strategy(exp.cfg.prune.strategy)
    if strategy.at_init:
        return at_init_mask(exp, load_mask(run.level_dir(0) / MASK_FILE, shapes),
                            rewind_source(exp, run)[0], level, invert=True)
    if strategy.score != "magnitude":
        raise TicketlabError(f"branch invert: prune.strategy {strategy.name} ranks no weights; nothing to invert")
    prev = load_mask(run.level_dir(level - 1) / MASK_FILE, shapes)
    state = load_state(run.level_dir(level - 1) / FINAL_FILE, exp.model)
    chosen = {n: prev[n] for n in exp.prune_names}
    return {**prev, **exp.granularity().inverted(state, chosen, exp.cfg.prune.rate, strategy.layerwise)}


def _check_args(name: str, fraction: Optional[float], copies: Optional[int], points: Optional[int],
                seed: Optional[int]) -> Branch:
    branch = BRANCHES.get(name)
    if seed is not None:
        check_seed("--seed", seed)
    if branch.fraction:
        if fraction is None or not 0.0 < fraction <= 1.0:
            raise TicketlabError(f"branch {name}: --fraction must be given, in (0, 1]")
    elif fraction is not None:
        with_fraction = [n for n, b in BRANCHES.items() if b.fraction]
        raise TicketlabError(f"branch {name}: --fraction only applies to {' and '.join(with_fraction)}")
    if copies is not None and name != INSTABILITY:
        raise TicketlabError(f"branch {name}: --copies only applies to {INSTABILITY}")
    if points is not None and not branch.on_path:
        on_path = [n for n, b in BRANCHES.items() if b.on_path]
        raise TicketlabError(f"branch {name}: --points only applies to {' and '.join(on_path)}")
    if points is not None and points < 2:
        raise TicketlabError(f"branch {name}: --points must be 2 or more (the two ends of the path)")
    return branch


def run_branch(level_dir: Path, name: str, *, fraction: Optional[float] = None, seed: Optional[int] = None,
               copies: Optional[int] = None, points: Optional[int] = None, bn_batches: int = 10,
               seeds: Optional[Sequence[int]] = None, stop: Optional[StopFlag] = None) -> tuple[Path, dict]:
    """Train branch `name` of a finished level; returns its directory and metrics. `seeds` (in
    code) gives the instability copies' data seeds; else they are `seed`, `seed`+1, …"""
    branch = _check_args(name, fraction, copies, points, seed)
    if bn_batches < 1:
        raise TicketlabError(f"branch {name}: --bn-batches must be 1 or more")
    run, level = parse_level_dir(level_dir)
    opened = open_level(Path(level_dir))
    exp, mask, cfg = opened.experiment, opened.mask, opened.experiment.cfg
    shapes = {n: tuple(m.shape) for n, m in mask.items()}
    seed = cfg.train.seed + 1 if seed is None else seed
    generator = torch.Generator().manual_seed(seed)
    if branch.pruned and level == 0:
        raise TicketlabError(f"branch {name}: level_00 is dense; pick a pruned level (level_01 or later)")
    if name == "early_bird" and level != 1:
        raise TicketlabError(f"branch early_bird: early-bird masks are drawn for level 1; give {run.level_dir(1)}")

    out = Path(level_dir) / branch_dir_name(name, fraction)
    if branch.on_path:
        with run_lock(run.root):
            if name == INSTABILITY:
                count = 2 if copies is None else copies  # 0 is refused by run_instability, not taken for 2
                copy_seeds = list(seeds) if seeds is not None else [seed + i for i in range(count)]
                return out, run_instability(exp, run, level, mask, out, seeds=copy_seeds, points=points or 11,
                                            bn_batches=bn_batches)
            return out, run_interpolate_next(exp, run, level, mask, out, points=points or 11, bn_batches=bn_batches)

    start, opt_state = rewind_source(exp, run) if level == 0 else level_start(exp, run, level)
    extra: dict = {}
    if name == "reinit":
        start = {k: v.detach() for k, v in exp.fresh_model(seed).state_dict().items()}
        opt_state = None
    elif name in ("random_mask", "shuffle_layerwise"):
        mask = exp.granularity().random_like(mask, generator)
    elif name == "invert":
        mask = inverted_mask(exp, run, level, shapes)
    elif name == "early_bird":
        step, path = draw_at(run.level_dir(0), fraction)
        mask = load_mask(path, shapes)
        extra = {"early_bird_step": step}
    elif name == "complement":
        mask = exp.granularity().complement(mask)
    else:
        mask = exp.granularity().perturb(mask, fraction, generator)

    with run_lock(run.root):  # one writer per run dir: not beside a `find` or another branch
        identity = {"level": level, "branch": name, "branch_seed": seed,
                    **({"fraction": fraction} if fraction is not None else {}), **extra}
        metrics = train_ticket(exp, TicketStart(out, mask, start, identity), LevelRun(
            start_step=exp.rewind_step, optimizer_state=opt_state, desc=f"level {level} {name}", stop=stop))
    return out, metrics
