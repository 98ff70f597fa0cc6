"""Config keys that name a file or directory, and the one rule by which a run dir records, finds and
compares them: `data.root`, `model.weights` and `init.source` (`PATH_KEYS`).

Recording (`find`, `RunDir.start`): a relative path is read from the directory `find` runs in, so
config.yaml records it as the absolute path it named there (symlinks resolved, `recorded_paths`):
`eval`, `report`, `branch` and `export` then read the same files from any directory. The run dir also
records every path key relative to itself (`RUN_DIR/paths.json`, `relative_paths`).

Relocation: a run, study or matrix directory moved or copied together with its inputs
(`cp -r work/ /elsewhere/`) keeps every path from the run dir to them, so a path key names the same
input when it is the recorded absolute path *or* the recorded run-dir-relative path read from where the
run dir is now (`same_location`). Readers and the resume check use that one rule: a reader takes
the run-dir-relative place when it exists (a copy reads the inputs copied with it), else the recorded
one (`located`); a resume accepts a new config whose path names either place, and refuses any other
path, so a different dataset (or weights file, or source level) at another place is still "a
different config".

Why place and not content: a dataset's identity would need a fingerprint of its files, and for an
image folder (ImageNet: 1.3 M files) that means reading or at least listing all of them at every resume;
annotation-file hashes would work for COCO/VOC only, and each data format would have to say which
files count. The place rule costs nothing and needs no format to know about it. What it cannot see: a
different dataset put exactly where the moved one should be, or the same dataset moved on its own to
an unrelated place (then write its new path into config.yaml, or use a new --out).
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any, Optional

from ticketlab.config import Config

PATH_KEYS = ("data.root", "model.weights", "init.source")


def key_value(cfg: Config, key: str) -> Any:
    """The value of a top-level section's key (`data.root`, `train.lr`)."""
    section, name = key.split(".")
    return getattr(getattr(cfg, section), name)


def with_key(cfg: Config, key: str, value: Any) -> Config:
    section, name = key.split(".")
    return replace(cfg, **{section: replace(getattr(cfg, section), **{name: value})})


def is_relative(path: str) -> bool:
    return not Path(path).expanduser().is_absolute()


def absolute(path: str) -> str:
    """A relative path as the absolute one it names from the current directory (symlinks resolved)."""
    return str(Path(path).resolve()) if is_relative(path) else path


def recorded_paths(cfg: Config) -> Config:
    """`cfg` with every relative path key made absolute against the current directory (symlinks
    resolved), where the run reads it: what config.yaml records, so the run finds it from anywhere."""
    for key in PATH_KEYS:
        value = key_value(cfg, key)
        if value and is_relative(value):
            cfg = with_key(cfg, key, absolute(value))
    return cfg


def relative_to(path: str, root: Path) -> str:
    """`path` as seen from directory `root` (both with symlinks resolved), to be read back by `moved_path`."""
    return os.path.relpath(Path(path).expanduser().resolve(), Path(root).resolve())


def relative_paths(cfg: Config, root: Path) -> dict[str, str]:
    """Every path key of `cfg` relative to run dir `root`: RUN_DIR/paths.json."""
    return {key: relative_to(value, root) for key in PATH_KEYS if (value := key_value(cfg, key))}


def moved_path(relative: str, root: Path) -> str:
    """A run-dir-relative path (`relative_paths`) read from where the run dir `root` is now."""
    return os.path.normpath(Path(root).resolve() / relative)


def same_path(a: str, b: str) -> bool:
    return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def same_location(recorded: Optional[str], moved: Optional[str], now: Optional[str]) -> bool:
    """Whether path `now` names the input a run recorded as `recorded` (absolute) or, the run dir
    having moved with its inputs, as `moved` (`moved_path`; None for a run dir without paths.json)."""
    if recorded is None or now is None:
        return recorded == now
    return same_path(recorded, now) or (moved is not None and same_path(moved, now))


def located(recorded: str, moved: Optional[str]) -> Optional[str]:
    """Where a recorded input is now: its run-dir-relative place (`moved`) when that exists, so a
    copied run dir reads the inputs copied with it; else its recorded path (a relative one, from a run
    dir written before paths were recorded absolute: from the current directory) when that exists;
    else None."""
    for candidate in (moved, absolute(recorded)):
        if candidate is not None and Path(candidate).expanduser().exists():
            return candidate
    return None
