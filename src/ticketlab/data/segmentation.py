"""Build the train/val semantic-segmentation datasets from a `DataConfig` (format voc_seg).

`root` is a VOC year directory (or a `ticketlab data synth` output), `train` / `val` are image-set
names under ImageSets/Segmentation (default train / val: paper 002 trains on VOC 2012 train and
reports mIoU on val). `image_size` is the training crop (default 513, the DeepLabv3+ crop); the
validation images keep their own size.
"""

from __future__ import annotations

from pathlib import Path

from ticketlab.config import DataConfig
from ticketlab.data.bundle import PIXEL_LABELS, DataBundle, DataFormat
from ticketlab.data.segmentation_transforms import collate_segmentation, segmentation_transforms
from ticketlab.data.transforms import IMAGENET_STATS
from ticketlab.data.voc_seg import VocSegmentation, read_class_names
from ticketlab.errors import TicketlabError
from ticketlab.registry import DATA_FORMATS

DEFAULT_CROP = 513


def build_segmentation_data(cfg: DataConfig, needs: frozenset = frozenset({PIXEL_LABELS})) -> DataBundle:
    if cfg.root is None:
        raise TicketlabError("data.root: a voc_seg dataset needs its directory (e.g. VOCdevkit/VOC2012)")
    root = Path(cfg.root).expanduser()
    if not root.is_dir():
        raise TicketlabError(f"data.root: directory {root} not found")
    crop = cfg.image_size or DEFAULT_CROP
    if crop < 1:
        raise TicketlabError(f"data.image_size: expected a positive integer, got {crop}")
    names = read_class_names(root)
    train_tf, val_tf = segmentation_transforms(IMAGENET_STATS, crop, cfg.augment)
    train = VocSegmentation(root, cfg.train or "train", len(names), train_tf, cfg.max_image_pixels)
    val = VocSegmentation(root, cfg.val or "val", len(names), val_tf, cfg.max_image_pixels)
    return DataBundle(train=train, val=val, num_classes=len(names), in_channels=3, image_size=crop,
                      class_names=names, collate_fn=collate_segmentation)


DATA_FORMATS.register("voc_seg", DataFormat(build_segmentation_data, frozenset({PIXEL_LABELS})))
