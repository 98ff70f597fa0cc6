"""Dataset formats: `data.format` from the config → a DataBundle (train/val splits + input facts).

Every dataset is read from standard files under `data.root` (or, for `digits`, from the copy that
ships with scikit-learn); nothing is ever downloaded. Each format registers itself in
`ticketlab.registry.DATA_FORMATS` with what it provides (`data.bundle.DataFormat`): `digits` and
`imagefolder` here, the small sets held in memory in their own files (listed at the bottom),
`coco` and `voc` in `data/detection.py`, `voc_seg` in `data/segmentation.py`. Which task may read which format is the task's declaration.
"""

from __future__ import annotations

from ticketlab.config import DataConfig
from ticketlab.data.bundle import CLASS_LABELS, DataBundle, DataFormat, data_root
from ticketlab.registry import DATA_FORMATS

DEFAULT_IMAGEFOLDER_SIZE = 224


def build_data(cfg: DataConfig, needs: frozenset = frozenset({CLASS_LABELS})) -> DataBundle:
    """Read the dataset `cfg` describes, with the annotations in `needs` (data.bundle's kinds)."""
    return DATA_FORMATS.get(cfg.format).build(cfg, needs)


def _digits(cfg: DataConfig, needs: frozenset) -> DataBundle:
    from ticketlab.data.digits import build_digits

    return build_digits(cfg)


def _imagefolder(cfg: DataConfig, needs: frozenset) -> DataBundle:
    from ticketlab.data import transforms as T
    from ticketlab.data.imagefolder import read_imagefolder

    size = cfg.image_size or DEFAULT_IMAGEFOLDER_SIZE
    train_tf, val_tf = T.large_image_transforms(T.IMAGENET_STATS, size, cfg.augment)
    train, val, classes = read_imagefolder(data_root(cfg), cfg.train or "train", cfg.val or "val", train_tf, val_tf,
                                            cfg.max_image_pixels)
    return DataBundle(train, val, len(classes), 3, size, classes)


_LABELS = frozenset({CLASS_LABELS})
DATA_FORMATS.register("digits", DataFormat(_digits, _LABELS))
DATA_FORMATS.register("imagefolder", DataFormat(_imagefolder, _LABELS))

# The formats registered in their own files: the small sets held in memory — cifar10, cifar100
# (data/cifar.py), svhn (data/small_sets.py), mnist, fashion_mnist (data/mnist.py) — and coco, voc
# (data/detection.py), voc_seg (data/segmentation.py).
import ticketlab.data.cifar  # noqa: E402,F401
import ticketlab.data.small_sets  # noqa: E402,F401
import ticketlab.data.mnist  # noqa: E402,F401
import ticketlab.data.detection  # noqa: E402,F401
import ticketlab.data.segmentation  # noqa: E402,F401

__all__ = ["DataBundle", "DataFormat", "DATA_FORMATS", "build_data"]
