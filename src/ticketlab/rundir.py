"""The run directory: the one place an IMP run's results live, and the state that makes it resumable.

Layout (DESIGN.md contract)::

    RUN_DIR/config.yaml            resolved config, every default written out
    RUN_DIR/task.json              the task's headline metric, its direction and its reported metrics
    RUN_DIR/level_NN/mask.safetensors, rewind.safetensors, final.safetensors, metrics.json, history.csv
    RUN_DIR/summary.csv            one row per finished level

A level is finished when its `metrics.json` exists: it is written last, atomically, so a run killed
at any moment either has it (and every other file of the level) or redoes the level from its last
checkpoint. Extra files: `level_00/rewind_point.safetensors` (late-resetting weights and, optionally,
optimizer state), `level_NN/checkpoint.safetensors` while a level trains, for detection tasks
`level_NN/detections.json`: the final evaluation's val detections as COCO results (what
`ticketlab eval --save-detections` writes), read by the report's COCO breakdowns, and
`config_changes.jsonl` when a rerun changed the learning rate or warmup (see RECOVERY_CHANGES).

`config.yaml` records where the run's inputs are: a relative `data.root`, `model.weights` or
`init.source` is written as the absolute path it named in the directory `find` ran in, and `paths.json`
holds the same paths relative to the run dir, so `eval`, `report`, `branch` and `export` find them from
any directory, and a run dir moved or copied together with its inputs still finds them and resumes
(`path_keys.py` has the rule and why). A run dir written before holds relative paths; they are read
from the current directory, with one line naming the key and the path(s) when the input is not there
(`locate_paths`). Whether a run dir may go on under a given config, finished or not, is decided in one
place (`RunDir.check_config`).

`task.json` (added with the task registry) lets `report`, `sweep` and `transfer-matrix` read a run
without importing its task: {"task": "detection", "headline": "bbox_AP", "higher_is_better": true,
"metrics": ["bbox_AP", …]}. Run dirs written before it existed fall back to the registered task.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional


from ticketlab.atomic import atomic_write_json, atomic_write_text, remove_stale_temporaries
from ticketlab.config import Config, dump_config, flatten, from_dict, to_dict, validate
from ticketlab.errors import TicketlabError
from ticketlab.path_keys import (PATH_KEYS, absolute, is_relative, key_value, located, moved_path, recorded_paths,
                                 relative_paths, same_location, with_key)
from ticketlab.yaml_file import read_yaml_mapping

# Keys that may differ when `find` (or a sweep / matrix cell) is rerun on an existing run dir: they
# change how or how far the run goes on, not what a finished level means: where it runs, how its data
# is loaded, what it logs, how often it saves resumable state (a resumed level is bit-exact whatever
# the interval), and the image-size guard (it refuses files; it does not change the ones it reads).
RESUMABLE_CHANGES = {"prune.levels", "train.device", "data.num_workers", "train.tensorboard", "train.dist_timeout",
                     "train.checkpoint_every", "data.max_image_pixels"}
# Keys that may also differ while a level is still to train, to rescue a level that diverged (a lower
# learning rate, a longer warmup): they change the levels still to train, so each change is logged
# with the first level it applies to. A finished run refuses them (`RunDir.check_config`).
RECOVERY_CHANGES = {"train.lr", "train.warmup"}
CHANGES_FILE = "config_changes.jsonl"

# Every file name of a run directory (the run dir owns them; everything else refers to these).
CONFIG_FILE = "config.yaml"
SUMMARY_FILE = "summary.csv"
TASK_FILE = "task.json"
PATHS_FILE = "paths.json"  # every path key relative to the run dir: where it is if moved with it (path_keys.py)
INIT_FILE = "init.json"  # what model.weights and init: put into the model (lottery/imp.py)
# per level (or branch) directory
MASK_FILE = "mask.safetensors"
START_FILE = "rewind.safetensors"  # the weights the level started from (rewind point ⊙ mask)
FINAL_FILE = "final.safetensors"
METRICS_FILE = "metrics.json"  # written last: the level is finished when it exists
HISTORY_FILE = "history.csv"
CHECKPOINT_FILE = "checkpoint.safetensors"  # while the level trains
DETECTIONS_FILE = "detections.json"
# level_00 only
REWIND_POINT_FILE = "rewind_point.safetensors"  # late resetting: the dense weights after N steps
REWIND_OPTIMIZER_FILE = "rewind_optimizer.safetensors"  # … and the optimizer state then
EARLY_BIRD_FILE = "early_bird.json"  # with prune.early_bird (lottery/early_bird.py)
SHARED_FILE = "shared.json"  # a study cell whose level 0 is a shared dense run's (lottery/shared.py)
REWIND_POINTS_DIR = "rewind_points"  # a shared dense run: every member's rewind point
DRAWS_DIR = "draws"  # a shared dense run: every member's early-bird draws
# A transfer-matrix directory (lottery/matrix.py): beside matrix.csv and universal.csv
MATRIX_COLUMNS_FILE = "columns.csv"  # the numbers paper 001's transfer tables show (lottery/matrix_columns.py)
MATRIX_FILE = "matrix.json"  # the spec's `paper:`, targets and seeds: what the report heads the table with
LEADING_COLUMNS = ["level", "sparsity_scope", "sparsity_network", "kept_scope", "scope_size"]


@dataclass(frozen=True)
class TaskRecord:
    """What a run's task said about its metrics (RUN_DIR/task.json)."""

    task: str
    headline: str
    higher_is_better: bool
    metrics: tuple[str, ...]

    def higher_is_better_for(self, metric: str) -> bool:
        """The headline's recorded direction; for any other metric larger is better, except losses."""
        return self.higher_is_better if metric == self.headline else not metric.endswith("loss")


@dataclass(frozen=True)
class Resume:
    """What `RunDir.check_config` allows: the config to record and the recovery changes to log."""

    record: Config
    changes: dict[str, tuple]


def level_name(level: int) -> str:
    return f"level_{level:02d}"


@dataclass
class RunDir:
    root: Path

    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_FILE

    def level_dir(self, level: int) -> Path:
        return self.root / level_name(level)

    def is_done(self, level: int) -> bool:
        return (self.level_dir(level) / METRICS_FILE).is_file()

    def finished_levels(self) -> list[int]:
        levels = []
        for p in sorted(self.root.glob("level_[0-9][0-9]*")):
            suffix = p.name.removeprefix("level_")
            if suffix.isdigit() and (p / METRICS_FILE).is_file():
                levels.append(int(suffix))
        return levels

    # -- config -----------------------------------------------------------------------------

    def load_config(self) -> Config:
        if not self.config_path.is_file():
            raise TicketlabError(f"{self.root}: not a ticketlab run directory (no config.yaml)")
        data = read_yaml_mapping(self.config_path, "run config")
        try:
            return validate(from_dict(Config, data))
        except TicketlabError as e:
            raise TicketlabError(f"{self.config_path}: {e}") from None

    def start(self, cfg: Config, task: Optional[TaskRecord] = None) -> None:
        """Create the run dir, or check that an existing one may go on with `cfg` (`check_config`);
        write the config (its path keys absolute), where those paths are from the run dir, and the task record."""
        self.root.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(self.root)
        resume = self.check_config(cfg)
        self._log_changes(resume.changes)
        atomic_write_text(self.config_path, dump_config(resume.record))
        relative = relative_paths(resume.record, self.root)
        if relative:
            atomic_write_json(self.root / PATHS_FILE, {"format": "ticketlab-paths/1", "relative_to_run_dir": relative})
        if task is not None:
            atomic_write_json(self.root / TASK_FILE, {**asdict(task), "metrics": list(task.metrics)})

    def finished(self, cfg: Config) -> bool:
        """Whether every level of `cfg` is done here."""
        return all(self.is_done(level) for level in range(cfg.prune.levels + 1))

    def check_config(self, cfg: Config) -> Resume:
        """The one rule for going on with this run dir under `cfg` (a resumed `find`, a sweep or
        transfer-matrix cell, finished or not; docs/resume.md): its recorded config must equal `cfg`,
        except for `RESUMABLE_CHANGES`, path keys that name the same place (`path_keys.same_location`:
        the run dir moved with its inputs), and `RECOVERY_CHANGES` while a level of `cfg` is still to
        train (returned, to be logged). A finished run reused with another learning rate would stand for
        a config it was not trained with, so there they are refused, unless the value is one the run
        had (`config_changes.jsonl`: a rescued cell rerun under its spec's original value keeps its
        record). Anything else: one line naming the run dir, the keys (old → new) and the ways on."""
        cfg = recorded_paths(cfg)
        if not self.config_path.is_file():
            return Resume(cfg, {})
        old = flatten(to_dict(recorded_paths(self.load_config())))
        new = flatten(to_dict(cfg))
        moved = self.moved_paths()
        finished = self.finished(cfg)
        had = self._recovery_history() if finished else {}
        changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k)
                         and not (k in PATH_KEYS and same_location(old.get(k), moved.get(k), new.get(k))))
        kept = [k for k in changed if k in RECOVERY_CHANGES and new.get(k) in had.get(k, [])]
        differ = [k for k in changed if k not in RESUMABLE_CHANGES | (set() if finished else RECOVERY_CHANGES)
                  and k not in kept]
        if differ:
            shown = ", ".join(f"{k}: {old.get(k)!r} → {new.get(k)!r}" for k in differ[:4])
            more = f" (+{len(differ) - 4} more)" if len(differ) > 4 else ""
            state = ("; every level is finished, so none would train with the new values" if finished else "")
            raise TicketlabError(f"{self.root} was started with a different config ({shown}{more}){state}; use a "
                                 f"new --out, delete {self.root} to run it again, or rerun with the original config "
                                 "to reuse it")
        for key in kept:
            cfg = with_key(cfg, key, old[key])
        return Resume(cfg, {k: (old.get(k), new.get(k)) for k in changed if k in RECOVERY_CHANGES and k not in kept})

    def _recovery_history(self) -> dict[str, list]:
        """Recovery key → every value `config_changes.jsonl` says the run had."""
        path = self.root / CHANGES_FILE
        if not path.is_file():
            return {}
        had: dict[str, list] = {}
        try:
            for line in path.read_text().splitlines():
                change = json.loads(line)
                had.setdefault(change["key"], []).extend([change["old"], change["new"]])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise TicketlabError(f"{path}: unreadable config change log ({e.__class__.__name__})") from None
        return had

    def recorded_config(self) -> Config:
        """config.yaml as a run started today from here would record it: every path key where the
        input is now (`locate_paths`: moved with the run dir, or at its recorded place; an older run
        dir's relative path read from the current directory), so the seeds of one study compare equal
        however the study dir was moved or extended (`report` groups series by it)."""
        return locate_paths(self.load_config(), self.config_path, self.moved_paths(), must_exist=False)

    def moved_paths(self) -> dict[str, str]:
        """Path key → where it is had the run dir moved with it (paths.json read from where the run dir
        is now); empty for a run dir written before paths.json existed."""
        path = self.root / PATHS_FILE
        if not path.is_file():
            return {}
        try:
            relative = json.loads(path.read_text())["relative_to_run_dir"]
            return {str(k): moved_path(str(v), self.root) for k, v in relative.items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise TicketlabError(f"{path}: unreadable paths record ({e.__class__.__name__}); delete it to "
                                 "read the run's recorded absolute paths only") from None

    def data_config(self) -> Config:
        """The run's config for a command that reads its inputs again: every path key located (`locate_paths`)."""
        return locate_paths(self.load_config(), self.config_path, self.moved_paths())

    def task_record(self) -> Optional[TaskRecord]:
        """RUN_DIR/task.json, or None for a run dir written before it existed."""
        path = self.root / TASK_FILE
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
            return TaskRecord(str(data["task"]), str(data["headline"]), bool(data["higher_is_better"]),
                              tuple(str(m) for m in data["metrics"]))
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise TicketlabError(f"{path}: unreadable task record ({e.__class__.__name__})") from None

    def _log_changes(self, changes: dict[str, tuple]) -> None:
        """Append recovery changes to `config_changes.jsonl`: config.yaml then holds the new values,
        and this file says from which level on they apply."""
        if not changes:
            return
        done = self.finished_levels()
        first = next(i for i in range(len(done) + 1) if i not in done)
        path = self.root / CHANGES_FILE
        lines = path.read_text().splitlines() if path.is_file() else []
        lines += [json.dumps({"from_level": first, "key": k, "old": old, "new": new})
                  for k, (old, new) in changes.items()]
        atomic_write_text(path, "\n".join(lines) + "\n")

    # -- results ----------------------------------------------------------------------------

    def read_metrics(self, level: int) -> dict:
        path = self.level_dir(level) / METRICS_FILE
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise TicketlabError(f"{path}: unreadable metrics file ({e.__class__.__name__})") from None

    def write_summary(self) -> list[dict]:
        rows = [self.read_metrics(k) for k in self.finished_levels()]
        columns = list(LEADING_COLUMNS)
        for row in rows:
            columns += [c for c in row if c not in columns]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row.get(c, "") for c in columns})
        atomic_write_text(self.root / SUMMARY_FILE, buf.getvalue())
        return rows


def locate_paths(cfg: Config, config_path: Path, moved: dict[str, str], *, must_exist: bool = True) -> Config:
    """A run's config with every path key found (`path_keys.located`): where the run dir's move took
    it, or where it was recorded. An input in neither place: with `must_exist`, one line naming the key
    and the place(s) looked at; without, its recorded path (made absolute from the current directory)."""
    for key in PATH_KEYS:
        value = key_value(cfg, key)
        if not value:
            continue
        found = located(value, moved.get(key))
        if found is not None or not must_exist:
            cfg = with_key(cfg, key, found or absolute(value))
            continue
        if is_relative(value):
            raise TicketlabError(f"{config_path}: {key}={value}: a relative path (the run dir predates recorded "
                                 f"absolute paths) and not found from the current directory as "
                                 f"{absolute(value)}; run the command from the directory the run was started "
                                 f"in, or write the absolute path into {key}")
        also = f", nor at {moved[key]} (where it would be, moved with the run dir)" if key in moved else ""
        raise TicketlabError(f"{config_path}: {key}={value}: not found{also} (the run's input has moved or is gone; "
                             f"put it back there or write its new path into {key})")
    return cfg


def write_metrics(level_dir: Path, metrics: dict) -> None:
    atomic_write_json(level_dir / METRICS_FILE, metrics)
