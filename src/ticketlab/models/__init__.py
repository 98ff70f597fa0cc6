"""Model registry: `model.family` from the config → a built model and its named module groups.

Classification families are built here; the R-CNN families (`fasterrcnn`, `maskrcnn`,
`keypointrcnn`) live in `models/detection.py`, YOLOv4 and SSD (`yolov4`, `ssd`) in `models/yolov4.py` and
`models/ssd.py`, and DeepLabV3 (`deeplabv3`) in `models/segmentation.py`;
both are imported only when asked for, so a classification run never imports the detection stack.
When `model.weights` is set, the file is loaded after building (a classifier's `fc` may be absent or
of another size: it stays freshly initialised, as when transferring a pretrained backbone to a new
label set); a checkpoint in another wrapping (MoCo, SimCLR, a detector's) fills the ResNet trunk
(`models/resnet_keys.py`).
"""

from __future__ import annotations

import difflib
import importlib
from functools import partial
from typing import Callable, Optional

from ticketlab.config import CONTRASTIVE_TASKS, ModelConfig, SSLConfig
from ticketlab.data.bundle import DataBundle
from ticketlab.errors import TicketlabError
from ticketlab.models.classifiers import build_cifar_resnet, build_lenet_300_100, build_resnet
from ticketlab.models.cifar_resnet import CIFAR_RESNET_DEPTHS
from ticketlab.models.resnet import RESNET_DEPTHS
from ticketlab.models.spec import BuiltModel
from ticketlab.models.resnet_keys import load_model_weights

Builder = Callable[[ModelConfig, DataBundle, int], BuiltModel]

CLASSIFIER_BUILDERS: dict[str, Builder] = {
    **{f"resnet{d}": partial(build_resnet, d) for d in RESNET_DEPTHS},
    **{f"cifar_resnet{d}": partial(build_cifar_resnet, d) for d in CIFAR_RESNET_DEPTHS},
    "lenet_300_100": build_lenet_300_100,
}
DETECTION_FAMILIES = ("fasterrcnn", "maskrcnn", "keypointrcnn")
SEGMENTATION_FAMILIES = ("deeplabv3",)
# Paper 002's single-stage detectors on a ResNet: family → (module, builder), imported when asked for.
SINGLE_STAGE_FAMILIES = {"yolov4": ("ticketlab.models.yolov4", "build_yolov4"),
                         "ssd": ("ticketlab.models.ssd", "build_ssd")}


def model_families() -> list[str]:
    """Every valid `model.family`."""
    return [*CLASSIFIER_BUILDERS, *DETECTION_FAMILIES, *SINGLE_STAGE_FAMILIES, *SEGMENTATION_FAMILIES]


def build_model(cfg: ModelConfig, data: DataBundle, task: str = "classification",
                ssl: Optional[SSLConfig] = None) -> BuiltModel:
    """Build `cfg.family` for `data` (classes and input channels), loading `cfg.weights` if set.

    For the contrastive tasks (simclr, moco) the classifier becomes their backbone (see
    `models/contrastive.py`), after the weights are loaded into it."""
    if cfg.family in DETECTION_FAMILIES:
        from ticketlab.models.detection import build_detection_model

        return build_detection_model(cfg, data)
    if cfg.family in SINGLE_STAGE_FAMILIES:
        module_name, builder_name = SINGLE_STAGE_FAMILIES[cfg.family]
        return getattr(importlib.import_module(module_name), builder_name)(cfg, data)
    if cfg.family in SEGMENTATION_FAMILIES:
        from ticketlab.models.segmentation import build_segmentation_model

        return build_segmentation_model(cfg, data)
    builder = CLASSIFIER_BUILDERS.get(cfg.family)
    if builder is None:
        valid = model_families()
        close = difflib.get_close_matches(cfg.family, valid, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise TicketlabError(f"model.family: {cfg.family!r} is not one of {', '.join(valid)}{hint}")
    num_classes = cfg.num_classes if cfg.num_classes is not None else data.num_classes
    if num_classes < 1:
        raise TicketlabError(f"model.num_classes: expected a positive integer, got {num_classes}")
    built = builder(cfg, data, num_classes)
    if cfg.weights:
        built.loaded = load_model_weights(built.module, cfg.weights, new_modules=("fc",),
                                          prefix=cfg.weights_prefix)
    if task in CONTRASTIVE_TASKS:
        from ticketlab.models.contrastive import contrastive_model

        wrapped = contrastive_model(built, ssl or SSLConfig(), task)
        wrapped.loaded = built.loaded
        return wrapped
    return built


__all__ = ["BuiltModel", "build_model", "model_families", "CLASSIFIER_BUILDERS", "DETECTION_FAMILIES"]
