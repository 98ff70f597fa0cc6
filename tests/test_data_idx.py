"""MNIST / Fashion-MNIST IDX readers: the published files gzipped or not, in data.root or torchvision's
*/raw/ layout, and one clear line for each way a file can be wrong."""

import gzip
import os
import re
import struct
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from ticketlab.config import DataConfig
from ticketlab.data import build_data
from ticketlab.data.idx import read_idx
from ticketlab.data.mnist import FASHION_MNIST, MNIST, file_stems, read_idx_set
from ticketlab.errors import TicketlabError

REAL = Path("/usr/share/datasets/fashion-mnist")
SMALL = replace(FASHION_MNIST, counts=(6, 4))  # the real layout and checks, a few images


def idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    header = struct.pack(">HBB", 0, type_code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_set(folder: Path, gz: bool, counts=(6, 4), seed=0) -> dict:
    """The four files of an IDX set in `folder`; returns the arrays written."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in zip(("train", "t10k"), counts):
        arrays[f"{split}-images-idx3-ubyte"] = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        arrays[f"{split}-labels-idx1-ubyte"] = rng.integers(0, 10, n, dtype=np.uint8)
    for stem, array in arrays.items():
        data = idx_bytes(array)
        if gz:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / stem).write_bytes(data)
    return arrays


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("layout", ["root", "raw"])
def test_reads_both_layouts_gzipped_or_not(tmp_path, gz, layout):
    folder = tmp_path if layout == "root" else tmp_path / "FashionMNIST" / "raw"
    arrays = write_set(folder, gz)
    (x_train, y_train), (x_val, y_val) = read_idx_set(tmp_path, SMALL)
    assert x_train.shape == (6, 1, 28, 28) and x_train.dtype == torch.uint8 and y_train.dtype == torch.int64
    assert np.array_equal(x_train[:, 0].numpy(), arrays["train-images-idx3-ubyte"])
    assert np.array_equal(y_val.numpy(), arrays["t10k-labels-idx1-ubyte"])
    assert x_val.shape == (4, 1, 28, 28)


def test_root_files_win_over_raw_and_mnist_has_its_own_folder(tmp_path):
    in_root = write_set(tmp_path, gz=True, seed=1)
    write_set(tmp_path / "FashionMNIST" / "raw", gz=False, seed=2)
    (x, _), _ = read_idx_set(tmp_path, SMALL)
    assert np.array_equal(x[:, 0].numpy(), in_root["train-images-idx3-ubyte"])
    with pytest.raises(TicketlabError, match=r"MNIST IDX files .* or .*/MNIST/raw"):
        read_idx_set(tmp_path / "MNIST", replace(MNIST, counts=(6, 4)))
    write_set(tmp_path / "m" / "MNIST" / "raw", gz=False)
    assert read_idx_set(tmp_path / "m", replace(MNIST, counts=(6, 4)))[1][0].shape == (4, 1, 28, 28)


def _corrupt(folder: Path, stem: str, data: bytes) -> Path:
    path = folder / f"{stem}.gz"
    path.write_bytes(gzip.compress(data))
    return path


def _malformed_cases():
    images = np.zeros((6, 28, 28), np.uint8)
    labels = np.zeros(6, np.uint8)
    full = idx_bytes(images)
    return {
        "truncated": ("train-images-idx3-ubyte", full[:-100], r"truncated: 4604 data bytes, expected 4704"),
        "trailing": ("train-images-idx3-ubyte", full + b"\0", r"has trailing bytes"),
        "not_idx": ("train-images-idx3-ubyte", b"PK\x03\x04 not an idx file", r"not an IDX file"),
        "labels_for_images": ("train-images-idx3-ubyte", idx_bytes(labels),
                              r"IDX magic number 0x00000801, expected 0x00000803 \(unsigned bytes, 3 dimensions: 6x28x28\)"),
        "float_type": ("train-labels-idx1-ubyte", idx_bytes(labels, 0x0D), r"expected 0x00000801"),
        "test_for_train": ("train-labels-idx1-ubyte", idx_bytes(np.zeros(4, np.uint8)),
                           r"IDX dimensions 4, expected 6"),
        "wrong_side": ("t10k-images-idx3-ubyte", idx_bytes(np.zeros((4, 32, 32), np.uint8)),
                       r"IDX dimensions 4x32x32, expected 4x28x28"),
        "label_range": ("t10k-labels-idx1-ubyte", idx_bytes(np.array([0, 3, 10, 1], np.uint8)),
                        r"label 10 found, expected labels 0…9"),
    }


@pytest.mark.parametrize("case", sorted(_malformed_cases()))
def test_each_malformed_file_is_named_in_one_line(tmp_path, case):
    write_set(tmp_path, gz=True)
    stem, data, expected = _malformed_cases()[case]
    path = _corrupt(tmp_path, stem, data)
    with pytest.raises(TicketlabError) as info:
        read_idx_set(tmp_path, SMALL)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"{path}: "), msg
    assert re.search(expected, msg), msg


def test_broken_gzip_and_plain_truncation(tmp_path):
    write_set(tmp_path, gz=True)
    gz = tmp_path / "t10k-images-idx3-ubyte.gz"
    gz.write_bytes(gz.read_bytes()[:50])
    with pytest.raises(TicketlabError, match=rf"^{gz}: not a readable gzip file"):
        read_idx_set(tmp_path, SMALL)
    plain = tmp_path / "x-idx1"
    plain.write_bytes(idx_bytes(np.zeros(5, np.uint8))[:6])
    with pytest.raises(TicketlabError, match=r"truncated IDX header \(expected 1 dimensions\)"):
        read_idx(plain, (None,))


def test_missing_files_say_where_and_how_to_get_them(tmp_path):
    write_set(tmp_path, gz=True)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(TicketlabError) as info:
        build_data(DataConfig(format="fashion_mnist", root=str(tmp_path)))
    msg = str(info.value)
    assert msg.startswith(f"data.root={tmp_path}: expected the Fashion-MNIST IDX files") and "\n" not in msg
    assert all(f"{s}[.gz]" in msg for s in file_stems()) and "apt-get install dataset-fashion-mnist" in msg


def test_no_download_is_ever_attempted(tmp_path, monkeypatch):
    import urllib.request

    def refuse(*a, **k):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(urllib.request, "urlretrieve", refuse)
    with pytest.raises(TicketlabError, match="expected the MNIST IDX files"):
        build_data(DataConfig(format="mnist", root=str(tmp_path)))


def real_fashion_mnist() -> Path:
    """The Debian-installed files; under CI they must be there (the CI set-up installs them)."""
    if not all((REAL / f"{s}.gz").is_file() for s in file_stems()):
        if os.environ.get("CI") == "true":
            pytest.fail(f"{REAL}: Fashion-MNIST missing under CI (apt-get install dataset-fashion-mnist)")
        pytest.skip(f"{REAL}: Debian's dataset-fashion-mnist is not installed")
    return REAL


def test_real_fashion_mnist_files():
    root = real_fashion_mnist()
    b = build_data(DataConfig(format="fashion_mnist", root=str(root), augment=False))
    assert (len(b.train), len(b.val), b.num_classes, b.in_channels, b.image_size) == (60000, 10000, 10, 1, 28)
    # published facts of the set: balanced classes (6,000 / 1,000 each); first training image an ankle boot
    assert torch.bincount(b.train.labels).tolist() == [6000] * 10
    assert torch.bincount(b.val.labels).tolist() == [1000] * 10
    assert b.class_names[int(b.train.labels[0])] == "Ankle boot"
    # the pixels are the file's bytes, read independently here
    raw = np.frombuffer(gzip.decompress((root / "t10k-images-idx3-ubyte.gz").read_bytes())[16:], np.uint8)
    assert np.array_equal(b.val.images.reshape(-1).numpy(), raw)
    x, _ = b.val[0]
    expected = (torch.from_numpy(raw[:784].reshape(1, 28, 28).astype(np.float32)) / 255 - 0.2860) / 0.3530
    assert torch.allclose(x, expected, atol=1e-6)
