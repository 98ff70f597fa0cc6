"""The `svhn` format: SVHN from its standard .mat files, through torchvision's reader (download=False).

SVHN is not a pickle (MATLAB .mat), so torchvision's own class reads it. Before handing over, the
expected files are checked, so that a missing dataset gives one line saying which files to put
where rather than torchvision's "use download=True". The images are handed on as uint8 tensors
(`in_memory.ImageTensors`). MNIST and Fashion-MNIST are read by `mnist.py`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torchvision import datasets

from ticketlab.config import DataConfig
from ticketlab.data.bundle import CLASS_LABELS, DataBundle, DataFormat, data_root
from ticketlab.data.in_memory import Split, tensor_bundle
from ticketlab.data.transforms import SVHN_STATS
from ticketlab.errors import TicketlabError
from ticketlab.registry import DATA_FORMATS

SVHN_URL = "http://ufldl.stanford.edu/housenumbers/"


def read_svhn(root: Path) -> tuple[Split, Split]:
    """SVHN cropped digits: root/train_32x32.mat and root/test_32x32.mat (test = validation), as
    (uint8 N×3×32×32 images, int64 labels 0–9)."""
    missing = [f for f in ("train_32x32.mat", "test_32x32.mat") if not (root / f).is_file()]
    if missing:
        raise TicketlabError(
            f"data.root={root}: expected SVHN files {', '.join(missing)} there "
            f"(download them from {SVHN_URL}, 'Format 2: Cropped Digits')"
        )
    splits = []
    for split in ("train", "test"):
        try:
            ds = datasets.SVHN(str(root), split=split, download=False)
        except RuntimeError:
            raise TicketlabError(
                f"data.root={root}: train_32x32.mat / test_32x32.mat do not match the published MD5 checksums "
                f"(re-download them from {SVHN_URL})"
            ) from None
        splits.append((torch.from_numpy(ds.data), torch.from_numpy(ds.labels).long()))
    return splits[0], splits[1]


def build_svhn(cfg: DataConfig, needs: frozenset) -> DataBundle:
    train, val = read_svhn(data_root(cfg))
    # No horizontal flip: mirrored digits are different (or no) digits.
    return tensor_bundle(cfg, train, val, SVHN_STATS, 10, [str(d) for d in range(10)], flip=False)


DATA_FORMATS.register("svhn", DataFormat(build_svhn, frozenset({CLASS_LABELS})))
