"""Which parameters a run may prune: the *scope*.

Only the weights of convolutions (incl. transposed) and linear layers are prunable — never norms or
biases (LTH convention, both papers). A user narrows the scope with module groups (DESIGN.md:
`scope: [base, top, rpn]`), widens it with parameter-name patterns (`include`) and removes groups
or patterns (`exclude: [stem]`). Group membership is by module path with a '.' boundary, never by
substring, so `layer1` does not swallow `layer10`. Every name a user typed must match something:
a typo that silently prunes the wrong layers is expensive.
"""

from __future__ import annotations

import difflib
import fnmatch
from typing import Iterable, Mapping, Sequence

from torch import nn

from ticketlab.errors import TicketlabError

PRUNABLE_TYPES: tuple[type[nn.Module], ...] = (
    nn.Conv1d, nn.Conv2d, nn.Conv3d,
    nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
    nn.Linear,
)


def prunable_parameter_names(model: nn.Module) -> list[str]:
    """`.weight` of every Conv*/ConvTranspose*/Linear module, in `named_parameters()` order."""
    wanted = set()
    for path, module in model.named_modules():
        if isinstance(module, PRUNABLE_TYPES) and isinstance(getattr(module, "weight", None), nn.Parameter):
            wanted.add(f"{path}.weight" if path else "weight")
    return [name for name, _ in model.named_parameters() if name in wanted]


def module_path(param_name: str) -> str:
    """'backbone.body.conv1.weight' → 'backbone.body.conv1' ('' for a parameter of the root)."""
    return param_name.rpartition(".")[0]


def under(path: str, group_path: str) -> bool:
    """True when module `path` is `group_path` or inside it ('.' boundary; '' is the root)."""
    return group_path == "" or path == group_path or path.startswith(group_path + ".")


def in_group(param_name: str, paths: Iterable[str]) -> bool:
    path = module_path(param_name)
    return any(under(path, gp) for gp in paths)


def group_of(param_name: str, groups: Mapping[str, Sequence[str]]) -> str | None:
    """The group holding `param_name`: the one with the longest (most specific) matching path;
    on equal length the first group in `groups` order. None when no group holds it."""
    path = module_path(param_name)
    best, best_len = None, -1
    for group, paths in groups.items():
        for gp in paths:
            if under(path, gp) and len(gp) > best_len:
                best, best_len = group, len(gp)
    return best


def unknown_group(key: str, name: str, groups: Mapping[str, Sequence[str]]) -> TicketlabError:
    close = difflib.get_close_matches(name, list(groups), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    valid = ", ".join(groups) or "none"
    return TicketlabError(f"{key}: unknown module group {name!r}{hint}; this model's groups are: {valid}")


def _is_pattern(text: str) -> bool:
    return any(c in text for c in "*?[")


def resolve_scope(
    model: nn.Module,
    groups: Mapping[str, Sequence[str]],
    scope: Sequence[str] | None,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
) -> list[str]:
    """The parameter names to prune, in `named_parameters()` order.

    scope: group names (None = every prunable weight); include: fnmatch patterns over prunable
    parameter names, added; exclude: group names or fnmatch patterns, removed.
    """
    prunable = prunable_parameter_names(model)
    all_params = [n for n, _ in model.named_parameters()]
    selected: set[str] = set()
    if scope is None:
        selected.update(prunable)
    else:
        for g in scope:
            if g not in groups:
                raise unknown_group("prune.scope", g, groups)
            hit = [n for n in prunable if in_group(n, groups[g])]
            if not hit:
                raise TicketlabError(f"prune.scope: module group {g!r} ({', '.join(groups[g])}) holds no "
                                     "conv/linear weights")
            selected.update(hit)
    for pat in include:
        hit = [n for n in prunable if fnmatch.fnmatchcase(n, pat)]
        if not hit:
            other = [n for n in all_params if fnmatch.fnmatchcase(n, pat)]
            why = (f"it matches only parameters that are never pruned (norms, biases): {', '.join(other[:5])}"
                   if other else "it matches no parameter name (patterns match names like 'backbone.body.conv1.weight')")
            raise TicketlabError(f"prune.include: pattern {pat!r} adds nothing: {why}")
        selected.update(hit)
    for item in exclude:
        if item in groups:
            hit = [n for n in prunable if in_group(n, groups[item])]
        else:
            hit = [n for n in prunable if fnmatch.fnmatchcase(n, item)]
            if not hit:
                if not _is_pattern(item) and "." not in item:
                    raise unknown_group("prune.exclude", item, groups)
                raise TicketlabError(f"prune.exclude: {item!r} is neither a module group nor a pattern matching "
                                     "a prunable parameter name (e.g. 'backbone.body.conv1.weight' or "
                                     "'roi_heads.*')")
        selected.difference_update(hit)
    result = [n for n in prunable if n in selected]
    if not result:
        raise TicketlabError(f"prune: the scope is empty (scope={list(scope) if scope is not None else None}, "
                             f"include={list(include)}, exclude={list(exclude)})")
    return result
