"""What every dataset builder returns: the two splits plus the facts a model builder needs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

from torch.utils.data import Dataset


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
