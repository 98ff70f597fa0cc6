"""An R-CNN's loss terms on validation images, with nothing in the model changed.

Paper 001 App. D (Fig. 10) compares the *validation* loss of dense and ticket during training.
torchvision's R-CNNs return their loss dict only in train mode, and train mode is not free of side
effects: BatchNorm updates its running statistics, dropout drops. `loss_mode` therefore puts the
model in train mode with every normalisation and dropout layer back in eval mode (they then use
their stored statistics and change nothing), and the caller runs it without gradients. The RPN and
RoI samplers draw random anchors/RoIs: `rcnn_loss_terms` draws them from a fixed seed inside a
forked RNG, so training's random stream is untouched and two evaluations of the same weights give
the same validation loss.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn
from torch.nn.modules.batchnorm import _NormBase

STILL_IN_TRAIN = (_NormBase, nn.GroupNorm, nn.LayerNorm, nn.Dropout, nn.Dropout2d)
SAMPLER_SEED = 0


@contextmanager
def loss_mode(model: nn.Module) -> Iterator[nn.Module]:
    """`model` in train mode (so torchvision computes losses) with norms and dropout in eval mode;
    every module's own mode is restored on exit."""
    modes = {m: m.training for m in model.modules()}
    model.train()
    for m in model.modules():
        if isinstance(m, STILL_IN_TRAIN):
            m.eval()
    try:
        yield model
    finally:
        for m, mode in modes.items():
            m.training = mode


@torch.no_grad()
def rcnn_loss_terms(model: nn.Module, images: list[torch.Tensor], targets: list[dict]) -> dict[str, float]:
    """torchvision's loss dict for one validation batch (floats; their sum under 'loss')."""
    device = images[0].device if images else torch.device("cpu")
    devices = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), loss_mode(model):
        torch.manual_seed(SAMPLER_SEED)
        terms = model(images, targets)
    out = {k: float(v) for k, v in terms.items()}
    return {"loss": sum(out.values()), **out}
