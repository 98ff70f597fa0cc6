"""scikit-learn's bundled handwritten digits (1,797 8×8 images): real data that needs no download.

Small enough to train LeNet or a CIFAR ResNet in seconds, so it is the default dataset of the demo
and of end-to-end tests. Pixels are scaled to [0, 1] and normalised with the training split's mean
and standard deviation; the train/val split is stratified and seeded by `data.split_seed` (kept
fixed across training seeds on purpose). Whole splits live in memory as TensorDatasets.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch.utils.data import TensorDataset

from ticketlab.config import DataConfig
from ticketlab.data.bundle import DataBundle
from ticketlab.errors import TicketlabError

NATIVE_SIZE = 8


def build_digits(cfg: DataConfig) -> DataBundle:
    if not 0.0 < cfg.val_fraction < 1.0:
        raise TicketlabError(f"data.val_fraction: expected a number between 0 and 1, got {cfg.val_fraction}")
    digits = load_digits()
    images = digits.images.astype(np.float32) / 16.0  # values 0..16 → [0, 1]
    labels = digits.target.astype(np.int64)
    idx_train, idx_val = train_test_split(
        np.arange(len(labels)), test_size=cfg.val_fraction, random_state=cfg.split_seed, stratify=labels
    )
    x = torch.from_numpy(images).unsqueeze(1)  # N×1×8×8
    size = cfg.image_size or NATIVE_SIZE
    if size != NATIVE_SIZE:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=size < NATIVE_SIZE)
    train_idx, val_idx = torch.from_numpy(np.sort(idx_train)), torch.from_numpy(np.sort(idx_val))
    mean, std = x[train_idx].mean(), x[train_idx].std()
    x = (x - mean) / std
    y = torch.from_numpy(labels)
    return DataBundle(
        train=TensorDataset(x[train_idx], y[train_idx]),
        val=TensorDataset(x[val_idx], y[val_idx]),
        num_classes=10,
        in_channels=1,
        image_size=size,
        class_names=[str(d) for d in digits.target_names],
    )
