"""Dataset formats: `data.format` from the config → a DataBundle (train/val splits + input facts).

Every dataset is read from standard files under `data.root` (or, for `digits`, from the copy that
ships with scikit-learn); nothing is ever downloaded. Each format registers itself in
`ticketlab.registry.DATA_FORMATS` with what it provides (`data.bundle.DataFormat`): the
classification formats here, `coco` and `voc` in `data/detection.py`, `voc_seg` in
`data/segmentation.py`. Which task may read which format is the task's declaration.
"""

from __future__ import annotations

from pathlib import Path

from ticketlab.config import DataConfig
from ticketlab.data.bundle import CLASS_LABELS, DataBundle, DataFormat
from ticketlab.errors import TicketlabError
from ticketlab.registry import DATA_FORMATS

DEFAULT_IMAGEFOLDER_SIZE = 224


def _root(cfg: DataConfig) -> Path:
    if not cfg.root:
        raise TicketlabError(f"data.root: required for format {cfg.format!r} (the directory holding its files)")
    # A missing directory is reported by each reader, which knows what files belong where.
    return Path(cfg.root).expanduser()


def build_data(cfg: DataConfig, needs: frozenset = frozenset({CLASS_LABELS})) -> DataBundle:
    """Read the dataset `cfg` describes, with the annotations in `needs` (data.bundle's kinds)."""
    return DATA_FORMATS.get(cfg.format).build(cfg, needs)


def _digits(cfg: DataConfig, needs: frozenset) -> DataBundle:
    from ticketlab.data.digits import build_digits

    return build_digits(cfg)


def _cifar(classes: int, cfg: DataConfig, needs: frozenset) -> DataBundle:
    from ticketlab.data import transforms as T
    from ticketlab.data.cifar import CIFAR10, CIFAR100, read_cifar

    layout, stats = (CIFAR10, T.CIFAR10_STATS) if classes == 10 else (CIFAR100, T.CIFAR100_STATS)
    train_tf, val_tf = T.small_image_transforms(stats, 32, cfg.image_size, cfg.augment)
    train, val, names = read_cifar(_root(cfg), layout, train_tf, val_tf)
    return DataBundle(train, val, classes, 3, cfg.image_size or 32, names)


def _svhn(cfg: DataConfig, needs: frozenset) -> DataBundle:
    from ticketlab.data import transforms as T
    from ticketlab.data.small_sets import read_svhn

    # No horizontal flip: mirrored digits are different (or no) digits.
    train_tf, val_tf = T.small_image_transforms(T.SVHN_STATS, 32, cfg.image_size, cfg.augment, flip=False)
    train, val = read_svhn(_root(cfg), train_tf, val_tf)
    return DataBundle(train, val, 10, 3, cfg.image_size or 32, [str(d) for d in range(10)])


def _fashion_mnist(cfg: DataConfig, needs: frozenset) -> DataBundle:
    from ticketlab.data import transforms as T
    from ticketlab.data.small_sets import FASHION_CLASSES, read_fashion_mnist

    train_tf, val_tf = T.small_image_transforms(T.FASHION_MNIST_STATS, 28, cfg.image_size, cfg.augment)
    train, val = read_fashion_mnist(_root(cfg), train_tf, val_tf)
    return DataBundle(train, val, 10, 1, cfg.image_size or 28, list(FASHION_CLASSES))


def _imagefolder(cfg: DataConfig, needs: frozenset) -> DataBundle:
    from ticketlab.data import transforms as T
    from ticketlab.data.imagefolder import read_imagefolder

    size = cfg.image_size or DEFAULT_IMAGEFOLDER_SIZE
    train_tf, val_tf = T.large_image_transforms(T.IMAGENET_STATS, size, cfg.augment)
    train, val, classes = read_imagefolder(_root(cfg), cfg.train or "train", cfg.val or "val", train_tf, val_tf,
                                            cfg.max_image_pixels)
    return DataBundle(train, val, len(classes), 3, size, classes)


_LABELS = frozenset({CLASS_LABELS})
DATA_FORMATS.register("digits", DataFormat(_digits, _LABELS))
DATA_FORMATS.register("imagefolder", DataFormat(_imagefolder, _LABELS))
DATA_FORMATS.register("cifar10", DataFormat(lambda cfg, needs: _cifar(10, cfg, needs), _LABELS))
DATA_FORMATS.register("cifar100", DataFormat(lambda cfg, needs: _cifar(100, cfg, needs), _LABELS))
DATA_FORMATS.register("svhn", DataFormat(_svhn, _LABELS))
DATA_FORMATS.register("fashion_mnist", DataFormat(_fashion_mnist, _LABELS))

# The formats registered in their own files: coco, voc (data/detection.py), voc_seg (data/segmentation.py).
import ticketlab.data.detection  # noqa: E402,F401
import ticketlab.data.segmentation  # noqa: E402,F401

__all__ = ["DataBundle", "DataFormat", "DATA_FORMATS", "build_data"]
