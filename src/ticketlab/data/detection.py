"""Build the train/val detection datasets from a `DataConfig` (format coco or voc).

Where files are looked up (the data-root layout rule):

format: coco — `train` / `val` are annotation files, relative to `root` (or absolute). Each
  image's `file_name` is relative to the *image root*, the first of:
    1. `root/images/`            if that directory exists (what `ticketlab data synth` writes:
                                 root/train.json, root/images/train/0001.png, file_name "train/0001.png");
    2. `root/<split>/`           if it exists, where <split> is the json's stem without an
                                 `instances_` / `person_keypoints_` prefix (the COCO 2017 layout:
                                 root/annotations/instances_val2017.json + root/val2017/);
    3. `root/`.
  A `file_name` may not be absolute nor contain '..'.
format: voc — `root` is a VOC year directory (VOCdevkit/VOC2007), `train` / `val` are image-set
  names (trainval, test, …) from ImageSets/Main; or `root` is VOCdevkit and a split names its year
  directories, joined by '+': `VOC2007/trainval+VOC2012/trainval` (paper 001's 07+12), `VOC2007/test`.
  The XML is converted in memory with `voc.voc_split_to_coco`; images are under <year>/JPEGImages/.

Images are resized inside the model (GeneralizedRCNNTransform), so `DataBundle.image_size` is the
size model builders should pass as `min_size` (cfg.image_size, default 800 as in torchvision).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from ticketlab.config import DataConfig
from ticketlab.data.bundle import BOXES, DataBundle, DataFormat
from ticketlab.data.coco import CocoDetection
from ticketlab.data.detection_transforms import RandomHorizontalFlip, Transform
from ticketlab.data.voc import voc_split_to_coco
from ticketlab.data.detection_validate import COCO_NEEDS
from ticketlab.errors import TicketlabError
from ticketlab.registry import DATA_FORMATS

DEFAULT_MIN_SIZE = 800  # torchvision's R-CNN default min_size
_SPLIT_PREFIXES = ("instances_", "person_keypoints_")


def collate_detection(batch: list) -> tuple:
    """[(image, target), …] → ((images…), (targets…)): detection models take lists, not stacks."""
    return tuple(zip(*batch))


def coco_image_root(root: Path, ann_file: Path) -> Path:
    """The directory `file_name`s are relative to (rule in the module docstring)."""
    if (root / "images").is_dir():
        return root / "images"
    split = ann_file.stem
    for prefix in _SPLIT_PREFIXES:
        split = split.removeprefix(prefix)
    if split and (root / split).is_dir():
        return root / split
    return root


def build_detection_data(cfg: DataConfig, needs: frozenset = frozenset({BOXES})) -> DataBundle:
    """The two splits of a coco or voc dataset with the targets in `needs` (boxes and, for coco,
    instance masks and/or keypoints)."""
    if not needs <= DATA_FORMATS.get(cfg.format).provides:
        raise TicketlabError(f"config key data.format: {cfg.format!r} does not provide {', '.join(sorted(needs))}")
    if cfg.root is None:
        raise TicketlabError("config key data.root: a detection dataset needs the directory holding its files")
    root = Path(cfg.root)
    if not root.is_dir():
        raise TicketlabError(f"config key data.root: directory {root} not found")
    for key in ("train", "val"):
        if getattr(cfg, key) is None:
            what = "annotation file (e.g. train.json)" if cfg.format == "coco" else "image set (e.g. trainval)"
            raise TicketlabError(f"config key data.{key}: a detection dataset needs its {what}")
    train = _split(cfg, root, str(cfg.train), needs, augment=cfg.augment)
    val = _split(cfg, root, str(cfg.val), needs, augment=False)
    if train.meta.cat_ids != val.meta.cat_ids or train.meta.keypoint_names != val.meta.keypoint_names:
        raise TicketlabError(f"config key data.val: {cfg.val} has categories {list(val.meta.cat_ids)} "
                             f"but {cfg.train} has {list(train.meta.cat_ids)}; both splits need the same label space")
    return DataBundle(train=train, val=val, num_classes=train.meta.num_classes, in_channels=3,
                      image_size=cfg.image_size or DEFAULT_MIN_SIZE, class_names=list(train.meta.class_names),
                      collate_fn=collate_detection)


def _split(cfg: DataConfig, root: Path, name: str, needs: frozenset, *, augment: bool) -> CocoDetection:
    data: Optional[dict[str, Any]] = None
    if cfg.format == "coco":
        ann_file = root / name
        image_root = coco_image_root(root, ann_file)
    else:
        first = name.split("+")[0].strip()
        year, _, image_set = first.rpartition("/")
        ann_file = (root / year if year else root) / "ImageSets" / "Main" / f"{image_set}.txt"
        data, image_root = voc_split_to_coco(root, name, max_pixels=cfg.max_image_pixels)
    dataset = CocoDetection(ann_file, image_root, needs, data=data, source_format=cfg.format,
                            max_pixels=cfg.max_image_pixels)
    if len(dataset) == 0:
        raise TicketlabError(f"{ann_file}: lists no images; a training or validation split needs at least one")
    if augment:
        transform: Transform = RandomHorizontalFlip(0.5, dataset.meta.keypoint_flip_map or None)
        dataset.transform = transform
    return dataset


DATA_FORMATS.register("coco", DataFormat(build_detection_data, COCO_NEEDS))
DATA_FORMATS.register("voc", DataFormat(build_detection_data, frozenset({BOXES})))  # VOC XML has boxes only
