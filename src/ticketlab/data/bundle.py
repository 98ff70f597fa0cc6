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
    # Choices the task's evaluation reads from the data config (VOC data: `voc_ap`, its headline AP).
    eval_options: dict[str, str] = field(default_factory=dict)
