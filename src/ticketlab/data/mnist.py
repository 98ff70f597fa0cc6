"""The `mnist` and `fashion_mnist` formats: the four published IDX files, held in memory as uint8 tensors.

The files (`train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`,
`t10k-labels-idx1-ubyte`, each gzipped or not) are looked for directly in `data.root` — as the
authors distribute them and as Debian's `dataset-fashion-mnist` installs them in
/usr/share/datasets/fashion-mnist — and in torchvision's download layout `root/<Folder>/raw/`.
Counts are checked (60,000 training and 10,000 test images of 28×28, as many labels, labels 0–9),
so a swapped or foreign file is named. The test split is the validation split, as in the papers.
Nothing is ever downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

from ticketlab.config import DataConfig
from ticketlab.data import transforms as T
from ticketlab.data.bundle import CLASS_LABELS, DataBundle, DataFormat, data_root
from ticketlab.data.idx import read_idx
from ticketlab.data.in_memory import Split, tensor_bundle
from ticketlab.errors import TicketlabError
from ticketlab.registry import DATA_FORMATS

SIDE = 28
NUM_CLASSES = 10


@dataclass(frozen=True)
class IdxSet:
    name: str
    folder: str  # torchvision's folder under root (root/<folder>/raw)
    url: str
    classes: tuple[str, ...]
    counts: tuple[int, int] = (60_000, 10_000)  # train, test


MNIST = IdxSet("MNIST", "MNIST", "https://yann.lecun.com/exdb/mnist/", tuple(str(d) for d in range(10)))
FASHION_MNIST = IdxSet(
    "Fashion-MNIST", "FashionMNIST", "https://github.com/zalandoresearch/fashion-mnist",
    ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
)
SPLITS = ("train", "t10k")


def file_stems() -> list[str]:
    return [f"{split}-{kind}-idx{nd}-ubyte" for split in SPLITS for kind, nd in (("images", 3), ("labels", 1))]


def locate_idx(root: Path, spec: IdxSet) -> dict[str, Path]:
    """stem → file, from the first of root, root/<folder>/raw that holds all four (gzipped or not)."""
    for folder in (root, root / spec.folder / "raw"):
        found = {}
        for stem in file_stems():
            for name in (f"{stem}.gz", stem):
                if (folder / name).is_file():
                    found[stem] = folder / name
                    break
        if len(found) == len(file_stems()):
            return found
    raise TicketlabError(
        f"data.root={root}: expected the {spec.name} IDX files {', '.join(f'{s}[.gz]' for s in file_stems())} "
        f"in {root} or {root / spec.folder / 'raw'} (download the *-ubyte.gz files from {spec.url}"
        + ("; on Debian/Ubuntu: apt-get install dataset-fashion-mnist, then data.root=/usr/share/datasets/fashion-mnist"
           if spec is FASHION_MNIST else "") + ")"
    )


def _split(files: dict[str, Path], split: str, count: int) -> Split:
    images = read_idx(files[f"{split}-images-idx3-ubyte"], (count, SIDE, SIDE))
    label_file = files[f"{split}-labels-idx1-ubyte"]
    labels = read_idx(label_file, (count,))
    if labels.numel() and int(labels.max()) >= NUM_CLASSES:
        raise TicketlabError(f"{label_file}: label {int(labels.max())} found, expected labels 0…{NUM_CLASSES - 1}")
    return images.unsqueeze(1), labels.long()  # N×1×28×28 uint8, int64


def read_idx_set(root: Path, spec: IdxSet) -> tuple[Split, Split]:
    """((train images, labels), (test images, labels)) of `spec` under `root`."""
    files = locate_idx(root, spec)
    return _split(files, "train", spec.counts[0]), _split(files, "t10k", spec.counts[1])


def build_idx_set(spec: IdxSet, stats: T.Stats, flip: bool, cfg: DataConfig, needs: frozenset) -> DataBundle:
    train, val = read_idx_set(data_root(cfg), spec)
    return tensor_bundle(cfg, train, val, stats, NUM_CLASSES, list(spec.classes), flip=flip)


# No flip for digits (a mirrored digit is another or no digit); clothes may be mirrored.
DATA_FORMATS.register("mnist", DataFormat(partial(build_idx_set, MNIST, T.MNIST_STATS, False), frozenset({CLASS_LABELS})))
DATA_FORMATS.register("fashion_mnist", DataFormat(partial(build_idx_set, FASHION_MNIST, T.FASHION_MNIST_STATS, True),
                                                  frozenset({CLASS_LABELS})))
