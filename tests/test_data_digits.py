"""digits: real sklearn data, stratified seeded split, normalised 1×8×8 tensors."""

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from ticketlab.config import Config, DataConfig
from ticketlab.data import build_data
from ticketlab.errors import TicketlabError
from ticketlab.tasks import build_task_data


def labels(ds):
    return ds.tensors[1].numpy()


def test_split_sizes_stratification_and_shapes():
    b = build_data(DataConfig(format="digits", val_fraction=0.25, split_seed=0))
    y_all = load_digits().target
    assert len(b.train) + len(b.val) == len(y_all) == 1797
    assert len(b.val) == int(np.ceil(0.25 * len(y_all)))
    assert (b.num_classes, b.in_channels, b.image_size) == (10, 1, 8)
    x, y = b.train[0]
    assert x.shape == (1, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.int64
    overall = np.bincount(y_all) / len(y_all)
    for ds in (b.train, b.val):
        share = np.bincount(labels(ds), minlength=10) / len(ds)
        assert np.abs(share - overall).max() < 0.01
    xt = b.train.tensors[0]
    assert abs(xt.mean().item()) < 1e-5 and abs(xt.std().item() - 1) < 1e-4


def test_split_is_a_partition_of_the_real_images():
    b = build_data(DataConfig(format="digits", split_seed=1))
    raw = torch.from_numpy(load_digits().images.astype(np.float32) / 16).flatten(1)
    xs = torch.cat([b.train.tensors[0], b.val.tensors[0]]).flatten(1)
    # undo the normalisation (an affine map) by matching sorted pixel sums after min-max scaling
    lo, hi = xs.min(), xs.max()
    recovered = (xs - lo) / (hi - lo)
    assert torch.allclose(recovered.sum(1).sort().values, (raw / raw.max()).sum(1).sort().values, atol=1e-3)


def test_determinism_and_split_seed():
    cfg = DataConfig(format="digits", split_seed=7)
    a, b = build_data(cfg), build_data(cfg)
    assert torch.equal(a.train.tensors[0], b.train.tensors[0]) and torch.equal(a.val.tensors[1], b.val.tensors[1])
    c = build_data(DataConfig(format="digits", split_seed=8))
    assert not torch.equal(a.val.tensors[0], c.val.tensors[0])


def test_image_size_resizes():
    b = build_data(DataConfig(format="digits", image_size=16))
    assert b.train[0][0].shape == (1, 16, 16) and b.image_size == 16


@pytest.mark.parametrize("cfg,task,match", [
    (DataConfig(format="digits", val_fraction=1.5), "classification", "data.val_fraction"),
    (DataConfig(format="digits"), "detection", "task detection reads coco, voc; 'digits' holds class_labels"),
])
def test_errors(cfg, task, match):
    with pytest.raises(TicketlabError, match=match):
        build_task_data(Config(task=task, data=cfg))
