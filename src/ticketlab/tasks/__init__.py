"""Task registry: a task name from the config → an object implementing `tasks.base.Task`."""

from __future__ import annotations

from ticketlab.errors import TicketlabError
from ticketlab.tasks.base import Task


def build_task(name: str, data) -> Task:
    if name == "classification":
        from ticketlab.tasks.classification import ClassificationTask

        return ClassificationTask(num_classes=data.num_classes)
    raise TicketlabError(f"task: {name!r} is not available yet")
