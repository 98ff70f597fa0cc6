"""The task registry's home: importing this package registers every built-in task, and the
functions here turn a config into its task, its dataset and its model — the one place where the
task's declarations (`tasks.base.Task`) are read to put a run together.

A task is one file under tasks/ with a `Task` subclass and one `TASKS.register(...)` line
(docs/extending.md); add its module to `BUILTIN` below.
"""

from __future__ import annotations

import importlib
from typing import Optional

from ticketlab.config import Config
from ticketlab.data import DATA_FORMATS, build_data
from ticketlab.data.bundle import DataBundle
from ticketlab.errors import TicketlabError
from ticketlab.models import MODEL_FAMILIES, build_model
from ticketlab.models.spec import BuiltModel
from ticketlab.registry import TASKS
from ticketlab.tasks.base import Task

BUILTIN = ("classification", "detection", "instance_segmentation", "keypoints", "segmentation", "contrastive")
for _module in BUILTIN:
    importlib.import_module(f"ticketlab.tasks.{_module}")


def task_class(name: str) -> type[Task]:
    return TASKS.get(name)


def accepted_formats(task: type[Task]) -> list[str]:
    """The registered data formats that provide everything `task` reads."""
    return [name for name, fmt in DATA_FORMATS.items() if task.data_needs <= fmt.provides]


def accepted_families(task: type[Task]) -> list[str]:
    return [name for name, fam in MODEL_FAMILIES.items() if fam.kind in task.model_kinds]


def build_task_data(cfg: Config) -> DataBundle:
    """`cfg.data` read for `cfg.task`: a format that provides what the task needs, adapted by it."""
    task = task_class(cfg.task)
    fmt = DATA_FORMATS.get(cfg.data.format)
    if not task.data_needs <= fmt.provides:
        raise TicketlabError(f"data.format: task {task.name} reads {', '.join(accepted_formats(task)) or 'no format'}; "
                             f"{cfg.data.format!r} holds {', '.join(sorted(fmt.provides))}")
    return task.adapt_data(build_data(cfg.data, task.data_needs), cfg)


def check_family(cfg: Config) -> None:
    task = task_class(cfg.task)
    family = MODEL_FAMILIES.get(cfg.model.family)
    if family.kind not in task.model_kinds:
        raise TicketlabError(f"model.family: task {task.name} trains {', '.join(accepted_families(task))}; "
                             f"{cfg.model.family!r} is a {family.kind}")


def build_task_model(cfg: Config, data: DataBundle) -> BuiltModel:
    """`cfg.model` built for `data` (weights loaded if set), as `cfg.task` trains it."""
    check_family(cfg)
    return task_class(cfg.task).adapt_model(build_model(cfg.model, data), cfg)


def build_task(name: str, data: DataBundle, cfg: Optional[Config] = None) -> Task:
    """The task `name` for a run of `cfg` (default: the default config) on `data`."""
    return task_class(name).build(cfg if cfg is not None else Config(task=name), data)


__all__ = ["Task", "TASKS", "task_class", "build_task", "build_task_data", "build_task_model",
           "accepted_formats", "accepted_families", "check_family"]
