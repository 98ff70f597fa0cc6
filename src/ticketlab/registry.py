"""Name registries: the one list of valid names for each thing a config or command names.

A task, a model family, a data format, a pruning strategy, a branch, an export format: each is
declared in its own file, which registers it here under its name (`TASKS.register(name, entry)`).
Everything that needs the list — `config.py` checking a key, the CLI's help, the consumers looking
an entry up — asks the registry, so adding one is one file plus one registration, and nothing keeps a
copied list of names.

The registries sit in the foundation (below every layer) while their entries live in the layers
above: a registry knows its *home*, the package whose import registers every built-in entry, and
imports it by name the first time it is asked for its names. An entry registered from elsewhere
(a test's toy task, a plug-in) joins the built-in ones.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Generic, Iterator, TypeVar

from ticketlab.errors import TicketlabError

T = TypeVar("T")


class Registry(Generic[T]):
    """Names → entries of one kind, filled by the modules that define them."""

    def __init__(self, kind: str, home: str, key: str) -> None:
        self.kind = kind  # what an entry is, for messages: "task", "model family", …
        self.home = home  # the package whose import registers the built-in entries
        self.key = key  # the config key or option that names an entry, for messages
        self._entries: dict[str, T] = {}
        self._loaded = False

    def register(self, name: str, entry: T) -> T:
        """Add `entry` under `name`; registering a different entry under a taken name is a bug."""
        old = self._entries.get(name)
        if old is not None and old is not entry:
            raise ValueError(f"{self.kind} {name!r} is registered twice ({old!r}, {entry!r})")
        self._entries[name] = entry
        return entry

    def unregister(self, name: str) -> None:
        """Drop `name` (a test's toy entry, once the test is done)."""
        self._entries.pop(name, None)

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True
            importlib.import_module(self.home)

    def names(self) -> list[str]:
        self._load()
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self.names()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def items(self) -> list[tuple[str, T]]:
        self._load()
        return list(self._entries.items())

    def find(self, name: object) -> T | None:
        """The entry named `name`, or None: for records that may name what this process does not know."""
        self._load()
        return self._entries.get(name) if isinstance(name, str) else None

    def get(self, name: str, key: str | None = None) -> T:
        """The entry named `name`, or a one-line error naming `key` (default: the registry's own
        key), the valid names and the closest one."""
        self._load()
        if name in self._entries:
            return self._entries[name]
        raise TicketlabError(unknown_name(key or self.key, name, list(self._entries)))


def unknown_name(key: str, value: object, valid: list[str]) -> str:
    """`key: 'x' is not one of a, b, c (did you mean 'a'?)`."""
    hint = difflib.get_close_matches(str(value), valid, n=1)
    extra = f" (did you mean {hint[0]!r}?)" if hint else ""
    return f"{key}: {value!r} is not one of {', '.join(valid)}{extra}"


# What each registry holds (the entry types are defined where the entries are):
TASKS: Registry = Registry("task", "ticketlab.tasks", "task")  # name → tasks.base.Task subclass
MODEL_FAMILIES: Registry = Registry("model family", "ticketlab.models", "model.family")  # → models.spec.ModelFamily
DATA_FORMATS: Registry = Registry("data format", "ticketlab.data", "data.format")  # → data.bundle.DataFormat
STRATEGIES: Registry = Registry("pruning strategy", "ticketlab.sparsity.strategies", "prune.strategy")  # → prune fn
BRANCHES: Registry = Registry("branch", "ticketlab.lottery.branches", "branch")  # → branches.Branch
EXPORT_FORMATS: Registry = Registry("export format", "ticketlab.deploy", "--format")  # → deploy.formats.ExportFormat
