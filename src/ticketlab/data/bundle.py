"""What every dataset builder returns (the two splits plus the facts a model builder needs), and
what a data format declares when it registers (`DataFormat`, in `ticketlab.registry.DATA_FORMATS`).

A format *provides* kinds of annotation; a task *needs* some (`tasks.base.Task.data_needs`) and
reads every format that provides all of them. The builder is told what is needed, so a COCO file
with masks and keypoints loads only the boxes for a detection run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

from torch.utils.data import Dataset

from ticketlab.errors import TicketlabError

if TYPE_CHECKING:
    from ticketlab.config import DataConfig

# Kinds of annotation a format provides and a task needs.
CLASS_LABELS = "class_labels"  # one class per image
BOXES = "boxes"  # COCO boxes with a class each
INSTANCE_MASKS = "instance_masks"  # a mask per box (COCO segmentation)
KEYPOINT_COORDS = "keypoint_coords"  # K (x, y, visibility) per box (COCO keypoints)
PIXEL_LABELS = "pixel_labels"  # a class per pixel (VOC SegmentationClass)


@dataclass
class DataBundle:
    train: Dataset
    val: Dataset
    num_classes: int
    in_channels: int
    image_size: int  # side of the (square) input images, after resizing
    class_names: list[str] = field(default_factory=list)
    collate_fn: Optional[Callable] = None  # None = torch's default collate
    # Contrastive tasks: the labelled training images under the evaluation transform, the memory
    # bank of kNN evaluation (`train` then yields two augmented views per image).
    memory: Optional[Dataset] = None
    # Contrastive tasks: the validation images as fixed pairs of augmented views, ((v1, v2), label),
    # the batches of retrieval accuracy (data/views.py).
    val_views: Optional[Dataset] = None


@dataclass(frozen=True)
class DataFormat:
    """A registered `data.format`: `build(cfg, needs)` reads it for a task needing `needs`."""

    build: Callable[["DataConfig", frozenset], DataBundle]
    provides: frozenset


def data_root(cfg: "DataConfig") -> Path:
    """`data.root` as a path; a format read from files needs it."""
    if not cfg.root:
        raise TicketlabError(f"data.root: required for format {cfg.format!r} (the directory holding its files)")
    # A missing directory is reported by each reader, which knows what files belong where.
    return Path(cfg.root).expanduser()
