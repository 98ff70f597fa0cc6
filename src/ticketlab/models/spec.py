"""What every model builder returns (the module plus its named module groups), and what a model
family declares when it registers (`ModelFamily`, in `ticketlab.registry.MODEL_FAMILIES`).

`groups` maps a group name (DESIGN.md's contract: stem, layer1…layer4, fc for classifiers; base,
top, fpn, rpn, … for R-CNNs) to module paths as they appear in `module.named_modules()`. A
parameter belongs to a group when its owning module's path equals one of the group's paths or lies
under it (path boundary at '.'), never by substring.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Optional

from torch import nn

if TYPE_CHECKING:
    from ticketlab.config import ModelConfig
    from ticketlab.data.bundle import DataBundle

# What a family's models output, i.e. which tasks can train them (tasks.base.Task.model_kinds).
CLASSIFIER = "classifier"  # image → class logits, with an `fc` head over pooled features
BOX_DETECTOR = "box_detector"  # torchvision detection API: list of images → boxes, labels, scores
MASK_DETECTOR = "mask_detector"  # … + a mask per box
KEYPOINT_DETECTOR = "keypoint_detector"  # … + keypoints per box
SEGMENTER = "segmenter"  # image → {"out": per-pixel class logits (, "aux")}


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


def default_export_note(cfg: "ModelConfig", data: "DataBundle") -> str:
    return (f"{cfg.family} is not a torchvision architecture; build it with ticketlab.models.build_model "
            "from the run's config.yaml")


@dataclass(frozen=True)
class ModelFamily:
    """A registered `model.family`.

    `build(cfg, data)` returns the BuiltModel (pretrained `cfg.weights` loaded into it); `groups`
    names the module groups its models have (DESIGN.md contract); `default_scope` is what
    `prune.scope: null` prunes (None = every conv/linear weight); `backbones` are the accepted
    `model.backbone` values (empty: the family has no backbone choice); `export_note(cfg, data)` says
    which stock model an exported state_dict loads into; `augment` is what a null `data.augment`
    means for it (random crops / flips of the training images).
    """

    build: Callable[["ModelConfig", "DataBundle"], BuiltModel]
    kind: str
    groups: tuple[str, ...]
    default_scope: Optional[tuple[str, ...]] = None
    backbones: tuple[str, ...] = ()
    export_note: Callable[["ModelConfig", "DataBundle"], str] = default_export_note
    augment: bool = True
