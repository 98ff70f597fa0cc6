"""What every model builder returns: the module plus its named module groups.

`groups` maps a group name (DESIGN.md's contract: stem, layer1…layer4, fc for classifiers; base,
top, fpn, rpn, … for R-CNNs) to module paths as they appear in `module.named_modules()`. A
parameter belongs to a group when its owning module's path equals one of the group's paths or lies
under it (path boundary at '.'), never by substring.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from torch import nn


@dataclass
class BuiltModel:
    module: nn.Module
    groups: dict[str, tuple[str, ...]]
    # Groups pruned when `prune.scope` is null; None = every conv/linear weight.
    default_scope: Optional[list[str]] = None
    # Parameter → the parameter whose mask it shares (e.g. MoCo's key encoder follows the query
    # encoder): not in the scope, but kept at zero wherever its leader is pruned.
    followers: dict[str, str] = field(default_factory=dict)
    loaded: Optional[dict] = None  # what `model.weights` matched and dropped (models/resnet_keys.py)
