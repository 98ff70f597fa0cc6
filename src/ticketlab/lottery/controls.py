"""Paper 002 §5.2's mask controls for every level of a run, as one command (`ticketlab controls`).

Fig. 8 compares each IMP mask m with its complement m^c, a random mask m_r with the same kept count
per tensor, and m + Δm_10% (10% of the ones flipped to zeros and as many zeros flipped to ones, so
every tensor keeps its count and the sparsity is the ticket's). Each control of each level is an
ordinary branch (`branches.py`): `level_NN/branch_complement`, `branch_random_mask`,
`branch_perturb_0.1`, trained under the level's schedule from its rewind point. Finished branches
(holding metrics.json) are read, not redone; one cut off mid-way resumes from its checkpoint, and its
random draw is the same again (seeded by the run's seed + 1 unless --seed is given).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Optional, Sequence

from ticketlab.config import check_seed
from ticketlab.errors import TicketlabError
from ticketlab.lottery.branches import branch_dir_name, run_branch
from ticketlab.registry import BRANCHES
from ticketlab.rundir import RunDir
from ticketlab.stop import StopFlag

CONTROLS = ("complement", "random_mask", "perturb")     # paper 002 Fig. 8


def choices() -> list[str]:
    """Every registered branch but early_bird (drawn for level 1 only, not a control of each level)."""
    return [n for n in BRANCHES.names() if n != "early_bird"]


def parse_list(text: Optional[str], what: str, cast=str) -> Optional[list]:
    """'1,3,5' → [1, 3, 5]; None stays None."""
    if text is None:
        return None
    try:
        items = [cast(t.strip()) for t in text.split(",") if t.strip()]
    except ValueError:
        raise TicketlabError(f"--{what}: expected a comma-separated list, got {text!r}") from None
    if not items:
        raise TicketlabError(f"--{what}: empty list")
    return items


def control_levels(run: RunDir, levels: Optional[Sequence[int]]) -> list[int]:
    """The pruned levels to control: the given ones (each finished and ≥ 1) or every finished one ≥ 1."""
    finished = run.finished_levels()
    if levels is None:
        chosen = [lv for lv in finished if lv > 0]
        if not chosen:
            raise TicketlabError(f"{run.root}: no finished pruned level (level_01 or later) to control")
        return chosen
    for lv in levels:
        if lv < 1:
            raise TicketlabError(f"--levels: level {lv} is dense; controls need a pruned level (1 or later)")
        if lv not in finished:
            raise TicketlabError(f"--levels: level {lv} is not finished in {run.root} (finished: "
                                 f"{', '.join(map(str, finished)) or 'none'})")
    return sorted(set(levels))


def run_controls(run_dir: Path, *, levels: Optional[Sequence[int]] = None, names: Sequence[str] = CONTROLS,
                 fraction: float = 0.1, seed: Optional[int] = None,
                 log: Callable[[str], None] = print, stop: Optional[StopFlag] = None) -> list[dict]:
    """Run (or resume) each control of each level; returns one metrics row per branch, in order.
    `stop`: a signal checkpoints the branch in training at its next step (`ticketlab.stop`)."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise TicketlabError(f"{run_dir}: not a ticketlab run directory (no config.yaml)")
    bad = [n for n in names if n not in choices()]
    if bad:
        raise TicketlabError(f"--only: {', '.join(bad)} not among {', '.join(choices())}")
    if seed is not None:
        check_seed("--seed", seed)
    if any(BRANCHES.get(n).fraction for n in names) and not 0.0 < fraction <= 1.0:  # checked before any training
        raise TicketlabError(f"--fraction: expected a number in (0, 1], got {fraction}")
    run = RunDir(run_dir)
    rows = []
    for level in control_levels(run, levels):
        for name in names:
            frac = fraction if BRANCHES.get(name).fraction else None
            out = run.level_dir(level) / branch_dir_name(name, frac)
            done = out / "metrics.json"
            if done.is_file():
                log(f"[level {level} {name}] finished: {out}")
                try:
                    metrics = json.loads(done.read_text())
                except (OSError, json.JSONDecodeError) as e:
                    raise TicketlabError(f"{done}: unreadable metrics file ({type(e).__name__})") from None
            else:
                log(f"[level {level} {name}] {out}")
                _, metrics = run_branch(run.level_dir(level), name, fraction=frac, seed=seed, stop=stop)
            rows.append(metrics)
    return rows
