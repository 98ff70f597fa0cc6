"""Model families: `model.family` from the config → a built model and its named module groups.

Each family registers itself in `ticketlab.registry.MODEL_FAMILIES` (`models.spec.ModelFamily`:
builder, kind, module groups, default scope, backbones, export note) in its own file: the
classifiers in `models/classifiers.py`, the R-CNNs (`fasterrcnn`, `maskrcnn`, `keypointrcnn`) in
`models/detection.py`, YOLOv4 and SSD (`yolov4`, `ssd`) in `models/yolov4.py` and `models/ssd.py`,
DeepLabV3 and DeepLabv3+ (`deeplabv3`, `deeplabv3plus`) in `models/segmentation.py`. What a task does to a
built model (the contrastive wrapper) is the task's (`tasks.base.Task.adapt_model`).
"""

from __future__ import annotations

from ticketlab.config import ModelConfig
from ticketlab.data.bundle import DataBundle
from ticketlab.errors import TicketlabError
from ticketlab.models.spec import BuiltModel, ModelFamily
from ticketlab.registry import MODEL_FAMILIES, unknown_name

import ticketlab.models.classifiers  # noqa: E402,F401  (registers its families)
import ticketlab.models.detection  # noqa: E402,F401
import ticketlab.models.yolov4  # noqa: E402,F401
import ticketlab.models.ssd  # noqa: E402,F401
import ticketlab.models.segmentation  # noqa: E402,F401
import ticketlab.models.deeplabv3plus  # noqa: E402,F401


def model_families() -> list[str]:
    """Every valid `model.family`."""
    return MODEL_FAMILIES.names()


def build_model(cfg: ModelConfig, data: DataBundle) -> BuiltModel:
    """Build `cfg.family` for `data` (classes and input channels), loading `cfg.weights` if set."""
    family: ModelFamily = MODEL_FAMILIES.get(cfg.family)
    if family.backbones and cfg.backbone is not None and cfg.backbone not in family.backbones:
        raise TicketlabError(unknown_name("model.backbone", cfg.backbone, list(family.backbones)))
    built = family.build(cfg, data)
    if built.default_scope is None and family.default_scope is not None:
        built.default_scope = list(family.default_scope)
    return built


__all__ = ["BuiltModel", "ModelFamily", "MODEL_FAMILIES", "build_model", "model_families"]
