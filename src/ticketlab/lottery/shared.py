"""Train the dense level once for every cell of a study (or transfer matrix) that has the same one.

Level 0 is a function of the model, data, training, seed and `init:`; `prune.*` only decides what
is done with it (`MaskEnforcer` leaves an all-ones mask alone, so the scope does not change dense
training). Cells that agree on everything but `prune.*` form a `DenseGroup`: its dense level is
trained once, as the ordinary run dir `OUT/shared/dense-<key>/` (`prune.levels: 0`), which on the way
also saves the rewind point of every member that resets late (`level_00/rewind_points/step_N…`) and
takes every member's early-bird draws (`level_00/draws/<draw key>/early_bird/`). A member's
`level_00/` then holds its own `mask.safetensors` and `metrics.json` (its scope's sparsity), hard
links to the shared files (weights, history, detections, its rewind point and draws: the same
bytes, not a copy), and `shared.json` naming the run they come from; `report`, `eval`, `branch` and
`find` read it like any level. Its summary equals the one the cell gets when run alone (timings
aside). A cell with `prune.early_bird_stop` trains its own level 0: its stop depends on `prune.*`.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Optional

from ticketlab.atomic import atomic_save_safetensors, atomic_write_json
from ticketlab.config import Config, flatten, to_dict
from ticketlab.errors import TicketlabError
from ticketlab.lottery.early_bird import EARLY_BIRD_DIR, EarlyBird
from ticketlab.lottery.experiment import Experiment, load_state, rewind_step_of, scope_of
from ticketlab.lottery.imp import Level0, finish_early_bird, level0_start, run_imp, save_optimizer_state, train_level0
from ticketlab.lottery.level import masked_state, sparsity_metrics
from ticketlab.rundir import (DETECTIONS_FILE, DRAWS_DIR, FINAL_FILE, HISTORY_FILE, MASK_FILE, REWIND_OPTIMIZER_FILE,
                              REWIND_POINT_FILE, REWIND_POINTS_DIR, SHARED_FILE, START_FILE, RunDir, write_metrics)
from ticketlab.sparsity import save_mask
from ticketlab.sparsity.enforce import with_followers
from ticketlab.stop import StopFlag
from ticketlab.train.checkpoint import content_digest
from ticketlab.train.distributed import Dist

SHARED_DIR = "shared"          # under a study or matrix directory
LINKED = (START_FILE, FINAL_FILE, HISTORY_FILE, DETECTIONS_FILE)
SPARSITY_KEYS = ("sparsity_scope", "sparsity_network", "kept_scope", "scope_size")


def _digest(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:12]


def dense_key(cfg: Config) -> Optional[str]:
    """What level 0 of `cfg` is a function of, as a short hash; None when it also depends on `prune.*`."""
    if cfg.prune.early_bird_stop:
        return None
    return _digest({k: v for k, v in flatten(to_dict(cfg)).items() if not k.startswith("prune.")})


def draw_key(cfg: Config) -> str:
    """What an early-bird draw is a function of, besides the dense weights."""
    p = cfg.prune
    return _digest({"strategy": p.strategy, "rate": p.rate, "scope": p.scope, "include": p.include,
                    "exclude": p.exclude})


def point_file(level0: Path, step: int, what: str = "weights") -> Path:
    return level0 / REWIND_POINTS_DIR / f"step_{step:07d}.{what}.safetensors"


@dataclass
class DenseGroup:
    """Cells (name → config) whose dense level is one and the same, trained in `root`."""

    key: str
    root: Path
    members: dict[str, Config] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.root.name

    def config(self) -> Config:
        """The shared run's own config: the first member's, dense only."""
        first = self.members[min(self.members)]
        return replace(first, prune=replace(first.prune, levels=0, rewind="init", rewind_optimizer=False,
                                            early_bird=[]))


def plan_groups(cells: dict[str, Config], shared_root: Path) -> dict[str, DenseGroup]:
    """Cell name → the group it shares level 0 with; cells whose level 0 is their own are absent."""
    groups: dict[str, DenseGroup] = {}
    for name, cfg in cells.items():
        key = dense_key(cfg)
        if key is not None:
            groups.setdefault(key, DenseGroup(key, Path(shared_root) / f"dense-{key}")).members[name] = cfg
    return {name: g for g in groups.values() if len(g.members) > 1 for name in g.members}


def member_experiment(exp: Experiment, cfg: Config) -> Experiment:
    """The experiment of member `cfg`, on the shared run's data and model (same architecture)."""
    scope, prunable = scope_of(cfg, exp.built, exp.transfer)
    return replace(exp, cfg=cfg, scope=scope, prunable=prunable, rewind_step=rewind_step_of(cfg, exp.steps_per_epoch))


def _dense_level0(group: DenseGroup) -> Level0:
    """Level 0 of the shared run: one training that saves every member's rewind point and draws."""

    def level0(exp: Experiment, run: RunDir, dist: Dist, early: Optional[EarlyBird],
               stop: Optional[StopFlag]) -> dict:
        out = run.level_dir(0)
        members = [member_experiment(exp, cfg) for cfg in group.members.values()]
        with_optimizer = {m.rewind_step for m in members if m.rewind_step > 0 and m.cfg.prune.rewind_optimizer}
        draws = {draw_key(m.cfg): EarlyBird(m, out / DRAWS_DIR / draw_key(m.cfg)) for m in members if m.cfg.prune.early_bird}

        def save_point(step, model, optimizer) -> None:
            if step in with_optimizer:
                save_optimizer_state(point_file(out, step, "optimizer"), optimizer)
            atomic_save_safetensors(point_file(out, step), model.state_dict())

        def draw(step, model) -> bool:
            for hook in draws.values():
                hook(step, model)
            return False  # members that could stop early are not shared (dense_key)

        return train_level0(exp, run, dist, rewind_steps={m.rewind_step for m in members if m.rewind_step > 0},
                            on_rewind=save_point, on_step=draw if draws else None, stop=stop)

    return level0


def _link(source: Path, target: Path) -> None:
    """`target` becomes another name of `source` (a hard link: the same bytes); atomic, like every write."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".tmp-{target.name}.link")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError as e:
        raise TicketlabError(f"{target}: cannot hard-link {source} ({e.strerror}); the study directory must be "
                             "on one filesystem that supports hard links") from None
    os.replace(tmp, target)


def linked_level0(group: DenseGroup) -> Level0:
    """Level 0 of a member: its own mask and metrics, the shared run's files by hard link."""

    def level0(exp: Experiment, run: RunDir, dist: Dist, early: Optional[EarlyBird],
               stop: Optional[StopFlag]) -> dict:
        shared = RunDir(group.root)
        if not shared.is_done(0):
            raise TicketlabError(f"{group.root}: the shared dense level of {run.root} is not finished; run the "
                                 "sweep (or transfer-matrix) again: it trains it first")
        src, dst = shared.level_dir(0), run.level_dir(0)
        init, mask = level0_start(exp)
        start = masked_state(init, with_followers(mask, exp.built.followers))
        if content_digest(start, "") != content_digest(load_state(src / START_FILE, exp.model), ""):
            raise TicketlabError(f"{src}: its start weights differ from the ones {run.root} starts from, so its "
                                 "dense level is not this cell's; delete the shared run and rerun")
        k = exp.rewind_step
        files = {src / n: dst / n for n in LINKED if (src / n).is_file()}
        if k > 0:
            files[point_file(src, k)] = dst / REWIND_POINT_FILE
            if exp.cfg.prune.rewind_optimizer:
                files[point_file(src, k, "optimizer")] = dst / REWIND_OPTIMIZER_FILE
        if early is not None:
            drawn = src / DRAWS_DIR / draw_key(exp.cfg) / EARLY_BIRD_DIR
            files.update({f: dst / EARLY_BIRD_DIR / f.name for f in sorted(drawn.glob("step_*.safetensors"))})
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise TicketlabError(f"{missing[0]}: missing from the shared dense run; delete {group.root} and rerun")
        dense = shared.read_metrics(0)
        metrics = {"level": 0, **sparsity_metrics(exp, mask),
                   **{k: v for k, v in dense.items() if k != "level" and k not in SPARSITY_KEYS}}

        def write() -> None:
            dst.mkdir(parents=True, exist_ok=True)
            save_mask(dst / MASK_FILE, mask)
            for source, target in files.items():
                _link(source, target)
            atomic_write_json(dst / SHARED_FILE, {
                "format": "ticketlab-shared-level/1", "run": os.path.relpath(group.root, run.root),
                "level": 0, "files": {str(t.relative_to(dst)): os.path.relpath(s, dst) for s, t in files.items()}})
            write_metrics(dst, metrics)
            if early is not None:
                finish_early_bird(early, exp, run)

        dist.on_main(write)
        return metrics

    return level0


def run_dense(group: DenseGroup, *, log: Callable[[str], None] = print, stop: Optional[StopFlag] = None) -> None:
    """Train (or resume) the group's shared dense level; nothing to do once it is finished."""
    if not RunDir(group.root).is_done(0):
        run_imp(group.config(), group.root, log=log, stop=stop, level0=_dense_level0(group))


def run_member(cfg: Config, root: Path, group: Optional[DenseGroup], *, log: Callable[[str], None] = print,
               stop: Optional[StopFlag] = None) -> list[dict]:
    """Run (or resume) one cell; with a group, its level 0 comes from the group's shared run."""
    if group is None or RunDir(root).is_done(0):
        return run_imp(cfg, root, log=log, stop=stop)
    run_dense(group, log=log, stop=stop)
    return run_imp(cfg, root, log=log, stop=stop, level0=linked_level0(group))


def finished(cfg: Config, root: Path) -> bool:
    """Whether every level of `cfg` is done in run dir `root`."""
    return RunDir(root).finished(cfg)


def check_cells(cells: dict[str, tuple[Config, Path]]) -> None:
    """Every cell (name → (config, run dir)) that has a run dir may go on under its config
    (`RunDir.check_config`), checked before anything trains: a finished cell is reused only with the
    config it ran with, so a spec edit such as a new train.lr is refused, not silently ignored."""
    for cfg, root in cells.values():
        RunDir(root).check_config(cfg)


def run_named(name: str, cells: dict[str, tuple[Config, Path]], groups: dict[str, DenseGroup], *,
              log: Callable[[str], None] = print, stop: Optional[StopFlag] = None) -> bool:
    """Run cell `name` (name → (config, run dir)) or the shared dense level of that name in this
    process; False when there is neither."""
    dense = {g.name: g for g in groups.values()}
    if name in dense:
        run_dense(dense[name], log=log, stop=stop)
    elif name in cells:
        run_member(*cells[name], groups.get(name), log=log, stop=stop)
    else:
        return False
    return True
