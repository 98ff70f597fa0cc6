"""Reading a user's YAML file (config, study, transfer-matrix spec) into a mapping, or one error line.

Every command that takes a YAML file reads it here, so each refuses the same bad files the same way:
missing, a directory, not UTF-8, not valid YAML (with the line), nested too deeply for the parser,
or not a mapping at the top level. Keys that several kinds of file share (a study's and a
transfer-matrix spec's `paper:`) are read here too, so each is checked, and refused, one way.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from ticketlab.errors import TicketlabError


class Loader(yaml.SafeLoader):
    """PyYAML's safe loader, except that `2:4` stays the string "2:4" (prune.granularity's N:M):
    YAML 1.1 reads it as the base-60 integer 124, YAML 1.2 (and every ticketlab key) has no base 60."""


Loader.yaml_implicit_resolvers = {k: list(v) for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
for _digit in "0123456789":
    Loader.yaml_implicit_resolvers.setdefault(_digit, []).insert(
        0, ("tag:yaml.org,2002:str", re.compile(r"^[0-9]+(?::[0-9]+)+$")))


def safe_load(text: str) -> Any:
    """`yaml.safe_load` with `Loader`: plain data, never Python objects."""
    return yaml.load(text, Loader=Loader)


def read_yaml_mapping(path: Path, what: str, expected: str = "a mapping of keys") -> dict[str, Any]:
    """The top-level mapping of YAML file `path`; `what` names the file's role in errors ("config"),
    `expected` says what the top level should hold. An empty file is an empty mapping."""
    path = Path(path)
    if not path.is_file():
        raise TicketlabError(f"{path}: {what} file not found" + (" (it is a directory)" if path.is_dir() else ""))
    try:
        data = safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise TicketlabError(f"{path}: not valid YAML{at}") from None
    except UnicodeDecodeError:
        raise TicketlabError(f"{path}: not a YAML {what} (not UTF-8 text)") from None
    except RecursionError:
        raise TicketlabError(f"{path}: not a usable {what} (nested too deeply)") from None
    if not isinstance(data, dict):
        raise TicketlabError(f"{path}: expected {expected} at the top level")
    return data


def read_paper(data: dict[str, Any], path: Path, what: str) -> str | None:
    """The optional `paper:` key of a study or transfer-matrix spec (`what`): the figure or table it
    reproduces, as non-empty text, or None when absent."""
    paper = data.get("paper")
    if paper is not None and (not isinstance(paper, str) or not paper.strip()):
        raise TicketlabError(f"{path}: paper: expected the figure or table the {what} reproduces, as text "
                             f"(e.g. \"001 Fig. 2a: mAP vs % of Base + Top pruned\"), got {paper!r}")
    return paper
