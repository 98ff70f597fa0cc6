"""SVHN and Fashion-MNIST through torchvision's readers (download=False), from their standard files.

Neither format is a pickle (SVHN: MATLAB .mat, Fashion-MNIST: IDX), so torchvision's own classes
read them. Before handing over, the expected files are checked, so that a missing dataset gives one
line saying which files to put where rather than torchvision's "use download=True".
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from torch.utils.data import Dataset
from torchvision import datasets

from ticketlab.errors import TicketlabError

SVHN_URL = "http://ufldl.stanford.edu/housenumbers/"
FASHION_URL = "https://github.com/zalandoresearch/fashion-mnist"
FASHION_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def read_svhn(root: Path, train_transform: Callable, val_transform: Callable) -> tuple[Dataset, Dataset]:
    """SVHN cropped digits: root/train_32x32.mat and root/test_32x32.mat (test = validation)."""
    missing = [f for f in ("train_32x32.mat", "test_32x32.mat") if not (root / f).is_file()]
    if missing:
        raise TicketlabError(
            f"data.root={root}: expected SVHN files {', '.join(missing)} there "
            f"(download them from {SVHN_URL}, 'Format 2: Cropped Digits')"
        )
    try:
        train = datasets.SVHN(str(root), split="train", transform=train_transform, download=False)
        val = datasets.SVHN(str(root), split="test", transform=val_transform, download=False)
    except RuntimeError:
        raise TicketlabError(
            f"data.root={root}: train_32x32.mat / test_32x32.mat do not match the published MD5 checksums "
            f"(re-download them from {SVHN_URL})"
        ) from None
    return train, val


def read_fashion_mnist(root: Path, train_transform: Callable, val_transform: Callable) -> tuple[Dataset, Dataset]:
    """Fashion-MNIST IDX files, un-gzipped, in root/FashionMNIST/raw (torchvision's layout)."""
    raw = root / "FashionMNIST" / "raw"
    missing = [f for f in FASHION_FILES if not (raw / f).is_file()]
    if missing:
        raise TicketlabError(
            f"data.root={root}: expected Fashion-MNIST IDX files {', '.join(missing)} in {raw} "
            f"(download the *-ubyte.gz files from {FASHION_URL} and gunzip them there)"
        )
    train = datasets.FashionMNIST(str(root), train=True, transform=train_transform, download=False)
    val = datasets.FashionMNIST(str(root), train=False, transform=val_transform, download=False)
    return train, val
