"""Dataset registry: `data.format` from the config → a DataBundle (train/val splits + input facts).

Every dataset is read from standard files under `data.root` (or, for `digits`, from the copy that
ships with scikit-learn); nothing is ever downloaded. Detection formats (`coco`, `voc`) live in
`data/detection.py`, the segmentation format (`voc_seg`) in `data/segmentation.py`; both are
imported only when asked for.
"""

from __future__ import annotations

from pathlib import Path

from ticketlab.config import CONTRASTIVE_TASKS, DataConfig
from ticketlab.data.bundle import DataBundle
from ticketlab.errors import TicketlabError

CLASSIFICATION_FORMATS = ("digits", "imagefolder", "cifar10", "cifar100", "svhn", "fashion_mnist")
DETECTION_FORMATS = ("coco", "voc")
SEGMENTATION_FORMATS = ("voc_seg",)
DEFAULT_IMAGEFOLDER_SIZE = 224


def _root(cfg: DataConfig) -> Path:
    if not cfg.root:
        raise TicketlabError(f"data.root: required for format {cfg.format!r} (the directory holding its files)")
    # A missing directory is reported by each reader, which knows what files belong where.
    return Path(cfg.root).expanduser()


def build_data(cfg: DataConfig, task: str) -> DataBundle:
    """Read the dataset `cfg` describes for `task`."""
    if cfg.format in DETECTION_FORMATS:
        from ticketlab.data.detection import build_detection_data

        return build_detection_data(cfg, task)
    if cfg.format in SEGMENTATION_FORMATS:
        from ticketlab.data.segmentation import build_segmentation_data

        return build_segmentation_data(cfg, task)
    if cfg.format not in CLASSIFICATION_FORMATS:
        valid = ", ".join((*CLASSIFICATION_FORMATS, *DETECTION_FORMATS, *SEGMENTATION_FORMATS))
        raise TicketlabError(f"data.format: {cfg.format!r} is not one of {valid}")
    if task in CONTRASTIVE_TASKS:  # the classification set, unlabelled: two views per image
        from ticketlab.data.views import contrastive_bundle

        return contrastive_bundle(build_data(cfg, "classification"), cfg.format)
    if task != "classification":
        raise TicketlabError(f"task: data.format {cfg.format!r} has class labels only; expected task: "
                             f"classification, {', '.join(CONTRASTIVE_TASKS)}, got {task!r}")

    if cfg.format == "digits":
        from ticketlab.data.digits import build_digits

        return build_digits(cfg)

    from ticketlab.data import transforms as T

    root = _root(cfg)
    if cfg.format in ("cifar10", "cifar100"):
        from ticketlab.data.cifar import CIFAR10, CIFAR100, read_cifar

        layout, stats, n = (CIFAR10, T.CIFAR10_STATS, 10) if cfg.format == "cifar10" else (CIFAR100, T.CIFAR100_STATS, 100)
        train_tf, val_tf = T.small_image_transforms(stats, 32, cfg.image_size, cfg.augment)
        train, val, names = read_cifar(root, layout, train_tf, val_tf)
        return DataBundle(train, val, n, 3, cfg.image_size or 32, names)
    if cfg.format == "svhn":
        from ticketlab.data.small_sets import read_svhn

        # No horizontal flip: mirrored digits are different (or no) digits.
        train_tf, val_tf = T.small_image_transforms(T.SVHN_STATS, 32, cfg.image_size, cfg.augment, flip=False)
        train, val = read_svhn(root, train_tf, val_tf)
        return DataBundle(train, val, 10, 3, cfg.image_size or 32, [str(d) for d in range(10)])
    if cfg.format == "fashion_mnist":
        from ticketlab.data.small_sets import FASHION_CLASSES, read_fashion_mnist

        train_tf, val_tf = T.small_image_transforms(T.FASHION_MNIST_STATS, 28, cfg.image_size, cfg.augment)
        train, val = read_fashion_mnist(root, train_tf, val_tf)
        return DataBundle(train, val, 10, 1, cfg.image_size or 28, list(FASHION_CLASSES))
    # imagefolder
    from ticketlab.data.imagefolder import read_imagefolder

    size = cfg.image_size or DEFAULT_IMAGEFOLDER_SIZE
    train_tf, val_tf = T.large_image_transforms(T.IMAGENET_STATS, size, cfg.augment)
    train, val, classes = read_imagefolder(root, cfg.train or "train", cfg.val or "val", train_tf, val_tf,
                                            cfg.max_image_pixels)
    return DataBundle(train, val, len(classes), 3, size, classes)


__all__ = ["DataBundle", "build_data", "CLASSIFICATION_FORMATS", "DETECTION_FORMATS", "SEGMENTATION_FORMATS"]
