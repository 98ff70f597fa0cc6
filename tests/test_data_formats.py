"""On-disk formats: image folders, CIFAR python batches, Fashion-MNIST IDX, and missing-data messages."""

import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from ticketlab.config import DataConfig
from ticketlab.data import build_data
from ticketlab.data.transforms import CIFAR10_STATS
from ticketlab.errors import TicketlabError


def write_image_folder(root, split, classes, per_class, size=20):
    rng = np.random.default_rng(0)
    for c in classes:
        (root / split / c).mkdir(parents=True)
        for i in range(per_class):
            arr = rng.integers(0, 256, (size, size + 4, 3), dtype=np.uint8)
            Image.fromarray(arr).save(root / split / c / f"{i}.png")


def test_imagefolder(tmp_path):
    write_image_folder(tmp_path, "train", ["cat", "dog", "eel"], 3)
    write_image_folder(tmp_path, "valid", ["cat", "eel"], 2)  # dog absent from val
    cfg = DataConfig(format="imagefolder", root=str(tmp_path), val="valid", image_size=16)
    torch.manual_seed(0)
    b = build_data(cfg)
    assert (b.num_classes, b.in_channels, b.image_size) == (3, 3, 16)
    assert b.class_names == ["cat", "dog", "eel"]
    assert (len(b.train), len(b.val)) == (9, 4)
    assert sorted({y for _, y in b.val}) == [0, 2]  # eel keeps index 2 although dog is missing
    x, y = b.train[0]
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32
    # augmentation draws from torch's global RNG: same seed, same crops
    torch.manual_seed(1)
    a1 = b.train[0][0]
    torch.manual_seed(1)
    assert torch.equal(a1, b.train[0][0])
    assert torch.equal(b.val[0][0], b.val[0][0])  # eval transform is deterministic


def test_imagefolder_errors(tmp_path):
    with pytest.raises(TicketlabError, match=r"data.train: expected an image folder at .*/train"):
        build_data(DataConfig(format="imagefolder", root=str(tmp_path)))
    write_image_folder(tmp_path, "train", ["a"], 1)
    write_image_folder(tmp_path, "val", ["a", "zz"], 1)
    with pytest.raises(TicketlabError, match="data.val: class folders zz"):
        build_data(DataConfig(format="imagefolder", root=str(tmp_path)))


def write_cifar10(root, per_batch=4):
    """The layout of cifar-10-python.tar.gz: pickled dicts with 'data' (N×3072 uint8) and 'labels'."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, per_batch)]
        batches[name] = (data, labels)
        with open(folder / name, "wb") as f:
            pickle.dump({"batch_label": name, "data": data, "labels": labels,
                         "filenames": [f"{i}.png" for i in range(per_batch)]}, f, protocol=2)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": names, "num_cases_per_batch": per_batch, "num_vis": 3072}, f)
    return batches


def test_cifar10_batches(tmp_path):
    batches = write_cifar10(tmp_path)
    b = build_data(DataConfig(format="cifar10", root=str(tmp_path), augment=False))
    assert (b.num_classes, b.in_channels, b.image_size) == (10, 3, 32)
    assert (len(b.train), len(b.val)) == (20, 4)
    assert b.class_names[0] == "airplane"
    data, labels = batches["test_batch"]
    x, y = b.val[2]
    assert y == labels[2]
    # the row layout is 1024 red, 1024 green, 1024 blue values, row-major
    raw = torch.from_numpy(data[2].reshape(3, 32, 32)).float() / 255
    mean = torch.tensor(CIFAR10_STATS.mean)[:, None, None]
    std = torch.tensor(CIFAR10_STATS.std)[:, None, None]
    assert torch.allclose(x, (raw - mean) / std, atol=1e-5)
    assert b.train[4][1] == batches["data_batch_2"][1][0]


def test_cifar10_augmentation_and_resize(tmp_path):
    write_cifar10(tmp_path)
    b = build_data(DataConfig(format="cifar10", root=str(tmp_path), image_size=24))
    assert b.train[0][0].shape == (3, 24, 24) and b.val[0][0].shape == (3, 24, 24)
    torch.manual_seed(5)
    first = torch.stack([b.train[i][0] for i in range(8)])
    torch.manual_seed(5)
    assert torch.equal(first, torch.stack([b.train[i][0] for i in range(8)]))


class _Payload:
    def __reduce__(self):
        import pathlib

        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def test_cifar_batch_with_code_is_refused(tmp_path):
    write_cifar10(tmp_path)
    payload = _Payload()
    payload.marker = str(tmp_path / "pwned")
    with open(tmp_path / "cifar-10-batches-py" / "test_batch", "wb") as f:
        pickle.dump({"data": np.zeros((1, 3072), np.uint8), "labels": [0], "x": payload}, f)
    with pytest.raises(TicketlabError, match="test_batch: not a CIFAR python batch"):
        build_data(DataConfig(format="cifar10", root=str(tmp_path)))
    assert not (tmp_path / "pwned").exists()


def test_cifar100_batches(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    for name, n in (("train", 6), ("test", 3)):
        with open(folder / name, "wb") as f:
            pickle.dump({"data": np.zeros((n, 3072), np.uint8), "fine_labels": list(range(90, 90 + n)),
                         "coarse_labels": [0] * n}, f)
    b = build_data(DataConfig(format="cifar100", root=str(tmp_path)))
    assert b.num_classes == 100 and (len(b.train), len(b.val)) == (6, 3) and b.val[2][1] == 92


@pytest.mark.parametrize("fmt,expected", [
    ("cifar10", r"expected CIFAR-10 python batches at {root}/cifar-10-batches-py \(download cifar-10-python.tar.gz"),
    ("cifar100", r"expected CIFAR-100 python batches at {root}/cifar-100-python"),
    ("svhn", r"expected SVHN files train_32x32.mat, test_32x32.mat"),
    ("fashion_mnist", r"expected the Fashion-MNIST IDX files .* in {root} or {root}/FashionMNIST/raw"),
])
def test_missing_files_say_what_to_put_where(tmp_path, fmt, expected):
    with pytest.raises(TicketlabError) as info:
        build_data(DataConfig(format=fmt, root=str(tmp_path)))
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"data.root={tmp_path}")
    import re

    assert re.search(expected.format(root=re.escape(str(tmp_path))), msg), msg


def test_partial_cifar_lists_missing_batches(tmp_path):
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(TicketlabError, match="missing data_batch_3"):
        build_data(DataConfig(format="cifar10", root=str(tmp_path)))


def test_root_required_and_must_exist(tmp_path):
    with pytest.raises(TicketlabError, match="data.root: required for format 'cifar10'"):
        build_data(DataConfig(format="cifar10"))
    # a missing directory gets the reader's own message: which files belong where
    with pytest.raises(TicketlabError, match=r"nope: expected SVHN files train_32x32.mat, test_32x32.mat there"):
        build_data(DataConfig(format="svhn", root=str(tmp_path / "nope")))
