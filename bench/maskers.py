"""The workloads and the four training arms that bench/masked_step.py times against each other.

Kept apart from the timing loop so that tests/test_bench_scripts.py can check that the arms do the
same work: given the same mask, batch and RNG state, ticketlab's MaskEnforcer, torch.nn.utils.prune
and an open_lth-style in-place re-mask leave the same effective weights after N steps. A timing
comparison between arms that trained different things would mean nothing.

Arms (each its own copy of the model, same initial weights, same SGD momentum + weight decay):
  dense      plain training step (the reference);
  ticketlab  MaskEnforcer: mask_grads() after backward, after_step(opt) after the step;
  torch      torch.nn.utils.prune.custom_from_mask reparametrisation (weight = weight_orig *
             weight_mask, recomputed by a forward pre-hook), plain step;
  open_lth   float mask buffers multiplied into the weights in place before every forward, one
             tensor at a time (what open_lth's PrunedModel.forward does); grads and optimizer
             state are left alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torchvision
from torch import nn
from torch.nn.utils import prune as tprune
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone

from ticketlab.sparsity import MaskEnforcer, full_mask, prunable_parameter_names, prune_global

ARMS = ("dense", "ticketlab", "torch", "open_lth")
MODELS = ("resnet18", "resnet50", "fasterrcnn_r18", "fasterrcnn_r50")
NUM_CLASSES = 10
# Fewer sampled proposals than torchvision's defaults (2000/2000, 512 RoIs per image), sized for
# small images: the weights are the same, but the step is not dominated by the 12.8M-weight box head.
DETECTION_SAMPLING = dict(rpn_pre_nms_top_n_train=600, rpn_post_nms_top_n_train=300,
                          box_batch_size_per_image=64)


@dataclass
class Workload:
    """A model builder and one fixed batch; `loss(model)` runs the forward pass on it."""
    name: str
    build: Callable[[], nn.Module]
    loss: Callable[[nn.Module], torch.Tensor]
    describe: str


def workload(name: str, image_size: int, batch: int, device: torch.device) -> Workload:
    g = torch.Generator().manual_seed(0)
    if name.startswith("resnet"):
        x = torch.randn(batch, 3, image_size, image_size, generator=g).to(device)
        y = torch.randint(0, NUM_CLASSES, (batch,), generator=g).to(device)
        factory = getattr(torchvision.models, name)
        return Workload(name, lambda: factory(num_classes=NUM_CLASSES).to(device),
                        lambda m: nn.functional.cross_entropy(m(x), y),
                        f"{name} classification, batch {batch}x3x{image_size}x{image_size}")
    depth = name.removeprefix("fasterrcnn_r")
    images = [torch.rand(3, image_size, image_size, generator=g).to(device) for _ in range(batch)]
    targets = []
    for _ in range(batch):
        xy = torch.rand(4, 2, generator=g) * image_size * 0.6
        wh = 8 + torch.rand(4, 2, generator=g) * image_size * 0.35
        targets.append({"boxes": torch.cat([xy, xy + wh], 1).to(device),
                        "labels": torch.randint(1, NUM_CLASSES, (4,), generator=g).to(device)})

    def build() -> nn.Module:
        backbone = resnet_fpn_backbone(backbone_name=f"resnet{depth}", weights=None,
                                       norm_layer=nn.BatchNorm2d, trainable_layers=5)
        return FasterRCNN(backbone, NUM_CLASSES, min_size=image_size, max_size=image_size,
                          **DETECTION_SAMPLING).to(device)

    return Workload(name, build, lambda m: sum(m(images, targets).values()),
                    f"Faster R-CNN R{depth}-FPN (torchvision, BatchNorm), {batch} images "
                    f"{image_size}x{image_size}, 4 boxes each, {DETECTION_SAMPLING['box_batch_size_per_image']} "
                    f"RoIs per image")


def magnitude_mask(model: nn.Module, sparsity: float) -> dict[str, torch.Tensor]:
    """Global magnitude mask over every conv/linear weight, `sparsity` of them removed."""
    params = dict(model.named_parameters())
    weights = {n: params[n].detach() for n in prunable_parameter_names(model)}
    return prune_global(weights, full_mask(weights), sparsity)


def _sgd(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)


class Arm:
    """One model copy trained one way; `step()` is one full training step."""

    def __init__(self, kind: str, work: Workload, mask: dict[str, torch.Tensor], seed: int = 0):
        torch.manual_seed(seed)
        self.kind, self.loss = kind, work.loss
        self.model = model = work.build()
        self.model.train()
        self.mask = mask
        self.enforcer = None
        self.remask: list[tuple[torch.Tensor, torch.Tensor]] = []
        if kind == "ticketlab":
            self.enforcer = MaskEnforcer(model, mask)
            self.enforcer.zero_weights()
        elif kind == "torch":
            for n, m in mask.items():
                tprune.custom_from_mask(model.get_submodule(n.rpartition(".")[0]), "weight", m)
        elif kind == "open_lth":
            params = dict(model.named_parameters())
            self.remask = [(params[n], m.to(params[n].dtype)) for n, m in mask.items()]
        elif kind != "dense":
            raise ValueError(f"unknown arm {kind!r}; expected one of {ARMS}")
        self.opt = _sgd(model)

    def step(self) -> None:
        self.opt.zero_grad(set_to_none=True)
        if self.remask:
            with torch.no_grad():
                for p, m in self.remask:
                    p.mul_(m)
        self.loss(self.model).backward()
        if self.enforcer is not None:
            self.enforcer.mask_grads()
        self.opt.step()
        if self.enforcer is not None:
            self.enforcer.after_step(self.opt)

    def effective_weights(self) -> dict[str, torch.Tensor]:
        """The conv/linear weights the next forward pass would use."""
        out = {}
        for n, m in self.mask.items():
            module = self.model.get_submodule(n.rpartition(".")[0])
            if self.kind == "torch":
                w = module.weight_orig.detach() * module.weight_mask
            else:
                w = module.weight.detach()
                if self.kind == "open_lth":  # re-masked only at the next forward
                    w = w * m.to(w.dtype)
            out[n] = w
        return out
