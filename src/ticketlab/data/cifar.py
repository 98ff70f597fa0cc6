"""CIFAR-10 / CIFAR-100 from the standard "python version" batches, read without trusting pickle.

The official distribution (cifar-10-python.tar.gz, cifar-100-python.tar.gz) stores its batches as
Python pickles. Unpickling a user file can run arbitrary code, so the batches are read with an
unpickler that only accepts plain containers and numpy arrays; anything else is refused before it
is called. (torchvision's CIFAR classes call pickle.load directly and recompute MD5s of all files
on every start, so they are not used here; the on-disk layout is the same.)
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch

from ticketlab.config import DataConfig
from ticketlab.data import transforms as T
from ticketlab.data.bundle import CLASS_LABELS, DataBundle, DataFormat, data_root
from ticketlab.data.in_memory import Split, tensor_bundle
from ticketlab.errors import TicketlabError
from ticketlab.registry import DATA_FORMATS

CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"

_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # how Python 3 pickles (protocol 2) store raw bytes
}


@dataclass(frozen=True)
class CifarLayout:
    name: str
    folder: str
    archive: str
    train_files: tuple[str, ...]
    val_files: tuple[str, ...]
    meta_file: str
    label_key: str
    names_key: str


CIFAR10 = CifarLayout(
    "CIFAR-10", "cifar-10-batches-py", "cifar-10-python.tar.gz",
    tuple(f"data_batch_{i}" for i in range(1, 6)), ("test_batch",), "batches.meta", "labels", "label_names",
)
CIFAR100 = CifarLayout(
    "CIFAR-100", "cifar-100-python", "cifar-100-python.tar.gz",
    ("train",), ("test",), "meta", "fine_labels", "fine_label_names",
)


class _ArrayUnpickler(pickle.Unpickler):
    """Resolves only numpy's array-reconstruction globals; any other class or function is refused."""

    def find_class(self, module: str, name: str):  # noqa: D401 - pickle API
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")


def read_batch(path: Path) -> dict:
    """One CIFAR batch (a pickled dict of lists and numpy arrays), read safely."""
    try:
        with open(path, "rb") as f:
            obj = _ArrayUnpickler(f, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as e:
        raise TicketlabError(f"{path}: not a CIFAR python batch ({e})") from None
    if not isinstance(obj, dict):
        raise TicketlabError(f"{path}: not a CIFAR python batch (expected a dict, got {type(obj).__name__})")
    return obj


def locate(root: Path, layout: CifarLayout) -> Path:
    """The batch folder under `root` (or `root` itself), or a one-line error saying what to put where."""
    for folder in (root / layout.folder, root):
        if all((folder / f).is_file() for f in (*layout.train_files, *layout.val_files)):
            return folder
    folder = root / layout.folder
    missing = [f for f in (*layout.train_files, *layout.val_files) if not (folder / f).is_file()]
    what = "" if not folder.is_dir() else f"; missing {', '.join(missing)}"
    raise TicketlabError(
        f"data.root={root}: expected {layout.name} python batches at {folder} (download {layout.archive} "
        f"from {CIFAR_URL} and extract it into {root}){what}"
    )


def _load(folder: Path, files: tuple[str, ...], label_key: str) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = [], []
    for name in files:
        batch = read_batch(folder / name)
        if "data" not in batch or label_key not in batch:
            raise TicketlabError(f"{folder / name}: expected keys 'data' and {label_key!r} in a CIFAR batch")
        data = np.asarray(batch["data"], dtype=np.uint8)
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(np.asarray(batch[label_key], dtype=np.int64))
    return torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels))


def read_cifar(root: Path, layout: CifarLayout) -> tuple[Split, Split, list[str]]:
    """((train images, labels), (test images, labels), class names): uint8 N×3×32×32 and int64;
    the test split serves as the validation split, as in the papers."""
    folder = locate(root, layout)
    train = _load(folder, layout.train_files, layout.label_key)
    val = _load(folder, layout.val_files, layout.label_key)
    names: list[str] = []
    if (folder / layout.meta_file).is_file():
        names = [str(n) for n in read_batch(folder / layout.meta_file).get(layout.names_key, [])]
    return train, val, names


def build_cifar(layout: CifarLayout, stats: T.Stats, num_classes: int, cfg: DataConfig, needs: frozenset) -> DataBundle:
    train, val, names = read_cifar(data_root(cfg), layout)
    return tensor_bundle(cfg, train, val, stats, num_classes, names)


_LABELS = frozenset({CLASS_LABELS})
DATA_FORMATS.register("cifar10", DataFormat(partial(build_cifar, CIFAR10, T.CIFAR10_STATS, 10), _LABELS))
DATA_FORMATS.register("cifar100", DataFormat(partial(build_cifar, CIFAR100, T.CIFAR100_STATS, 100), _LABELS))
