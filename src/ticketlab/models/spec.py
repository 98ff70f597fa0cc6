"""What every model builder returns: the module plus its named module groups.

`groups` maps a group name (DESIGN.md's contract: stem, layer1…layer4, fc for classifiers; base,
top, fpn, rpn, … for R-CNNs) to module paths as they appear in `module.named_modules()`. A
parameter belongs to a group when its owning module's path equals one of the group's paths or lies
under it (path boundary at '.'), never by substring.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from torch import nn


@dataclass
class BuiltModel:
    module: nn.Module
    groups: dict[str, tuple[str, ...]]
    loaded: Optional[dict] = None  # what `model.weights` matched and dropped (models/resnet_keys.py)
