"""Exact compaction: physically remove the hidden channels of a ticket that cannot change its outputs.

Unstructured pruning leaves dense tensors full of zeros; a dense-kernel runtime still multiplies
them. Whole channels can go, but only where that provably leaves the outputs unchanged. A hidden
channel c sits between a producer (conv/linear), an optional eval-mode norm, a ReLU and one or more
consumers (conv/linear). It is removed when

- every consumer's input kernel for c is all zero (c is never read), or
- the producer's filter for c is all zero, so the channel is the constant k = relu(norm(bias_c)),
  and k == 0 (computed by running the model's own norm and ReLU on it), or
- the filter is all zero and every consumer is a Linear with a bias: k·W[:, c] is folded into that
  bias (a Linear has no borders; a padded conv does, where the constant does not reach, so a
  nonzero constant into a conv is kept).

A zero filter followed by BatchNorm is NOT a zero channel: it outputs β − γμ/√(σ²+ε). Residual
block outputs are never touched (the shortcut adds to every channel). Chains are found by module
type: torchvision BasicBlock (conv1→conv2), Bottleneck (conv1→conv2, conv2→conv3), TwoMLPHead
(fc6→fc7) and fc7→box predictor, LeNet-300-100 (layer1→layer2→fc). The model must be in eval mode.

A channel ticket (`prune.granularity: channel`) says more: its removed channels — residual streams
and their coupled layers included — output exactly 0 (filters pruned, norm γ/β held at 0;
`sparsity/channels.py`), so `compact(model, units, example)` first removes every one of them with
Torch-Pruning's dependency graph (`sparsity/coupling.py`), the model staying the same torchvision
classes with fewer channels, and then applies the rules above to what is left.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

import torch
from torch import nn
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.resnet import BasicBlock, Bottleneck
from torchvision.ops.misc import FrozenBatchNorm2d

from ticketlab.errors import TicketlabError
from ticketlab.models.lenet import LeNet300100

Norm = (nn.BatchNorm2d, FrozenBatchNorm2d)


@dataclass(frozen=True)
class Chain:
    producer: str
    norm: str | None
    consumers: tuple[str, ...]


@dataclass
class ChainRow:
    producer: str
    channels: int
    kept: int
    unread: int  # every consumer kernel of the channel is zero
    zero: int  # zero filter whose constant output is 0 after norm and ReLU
    folded: int  # zero filter, nonzero constant folded into Linear consumers' biases


@dataclass
class CompactionReport:
    rows: list[ChainRow] = field(default_factory=list)
    params_before: int = 0
    params_after: int = 0

    @property
    def channels_removed(self) -> int:
        return sum(r.channels - r.kept for r in self.rows)


def find_chains(model: nn.Module) -> list[Chain]:
    """The producer → (norm) → ReLU → consumers chains whose hidden channels may be removed."""
    chains = []
    for path, m in model.named_modules():
        p = f"{path}." if path else ""
        if isinstance(m, BasicBlock):
            chains.append(Chain(p + "conv1", p + "bn1", (p + "conv2",)))
        elif isinstance(m, Bottleneck):
            chains += [Chain(p + "conv1", p + "bn1", (p + "conv2",)), Chain(p + "conv2", p + "bn2", (p + "conv3",))]
        elif isinstance(m, TwoMLPHead):
            chains.append(Chain(p + "fc6", None, (p + "fc7",)))
        elif isinstance(m, RoIHeads) and isinstance(m.box_head, TwoMLPHead) \
                and isinstance(m.box_predictor, FastRCNNPredictor):
            chains.append(Chain(p + "box_head.fc7", None, (p + "box_predictor.cls_score", p + "box_predictor.bbox_pred")))
        elif isinstance(m, LeNet300100):
            chains += [Chain(p + "layer1", None, (p + "layer2",)), Chain(p + "layer2", None, (p + "fc",))]
    return chains


def _per_channel_zero(weight: torch.Tensor, dim: int) -> torch.Tensor:
    """True for each index along `dim` whose slice of `weight` is all zero."""
    return (weight.detach().transpose(0, dim).reshape(weight.shape[dim], -1) == 0).all(dim=1)


def _constant_output(producer: nn.Module, norm: nn.Module | None) -> torch.Tensor:
    """What each channel outputs after norm and ReLU when its filter is all zero: the model's own
    modules run on the producer's bias (or 0), so the value is the one the model computes."""
    n = producer.weight.shape[0]
    w = producer.weight
    v = producer.bias.detach().clone() if producer.bias is not None else torch.zeros(n, dtype=w.dtype, device=w.device)
    with torch.no_grad():
        if norm is not None:
            v = norm(v.reshape(1, n, 1, 1)).reshape(n)
        return torch.relu(v)


def _sliced_conv(conv: nn.Conv2d, out_keep: torch.Tensor | None, in_keep: torch.Tensor | None) -> nn.Conv2d:
    w = conv.weight.detach()
    w = w[out_keep] if out_keep is not None else w
    w = w[:, in_keep] if in_keep is not None else w
    new = nn.Conv2d(w.shape[1], w.shape[0], conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                    bias=conv.bias is not None, padding_mode=conv.padding_mode, device=w.device, dtype=w.dtype)
    with torch.no_grad():
        new.weight.copy_(w)
        if conv.bias is not None:
            new.bias.copy_(conv.bias.detach()[out_keep] if out_keep is not None else conv.bias.detach())
    return new


def _sliced_linear(lin: nn.Linear, out_keep: torch.Tensor | None, in_keep: torch.Tensor | None,
                   bias: torch.Tensor | None = None) -> nn.Linear:
    w = lin.weight.detach()
    w = w[out_keep] if out_keep is not None else w
    w = w[:, in_keep] if in_keep is not None else w
    new = nn.Linear(w.shape[1], w.shape[0], bias=lin.bias is not None, device=w.device, dtype=w.dtype)
    with torch.no_grad():
        new.weight.copy_(w)
        if lin.bias is not None:
            b = bias if bias is not None else lin.bias.detach()
            new.bias.copy_(b[out_keep] if out_keep is not None else b)
    return new


def _sliced_norm(norm: nn.Module, keep: torch.Tensor) -> nn.Module:
    k = int(keep.sum())
    if isinstance(norm, FrozenBatchNorm2d):
        new = FrozenBatchNorm2d(k, eps=norm.eps)
    else:
        new = nn.BatchNorm2d(k, eps=norm.eps, momentum=norm.momentum, affine=norm.affine,
                             track_running_stats=norm.track_running_stats)
        if norm.num_batches_tracked is not None:
            new.num_batches_tracked.copy_(norm.num_batches_tracked)
    new.to(norm.running_mean.device)
    with torch.no_grad():
        for name, t in [*norm.named_parameters(recurse=False), *norm.named_buffers(recurse=False)]:
            if t is not None and t.dim() == 1 and t.numel() == keep.numel():
                getattr(new, name).copy_(t.detach()[keep])
    return new.eval()


def _replace(model: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, name, module)


def _compact_chain(model: nn.Module, chain: Chain) -> ChainRow | None:
    producer = model.get_submodule(chain.producer)
    norm = model.get_submodule(chain.norm) if chain.norm else None
    consumers = [model.get_submodule(c) for c in chain.consumers]
    layers = [producer, *consumers]
    if not all(isinstance(m, (nn.Linear, nn.Conv2d)) for m in layers) or \
            any(isinstance(m, nn.Conv2d) and m.groups != 1 for m in layers) or \
            (norm is not None and not isinstance(norm, Norm)):
        return None  # not the plain structure the rules above are proven for
    if norm is not None and norm.training:
        raise TicketlabError(f"compaction: {chain.norm} is in training mode; compaction is exact in eval mode only")
    n = producer.weight.shape[0]
    unread = torch.stack([_per_channel_zero(c.weight, 1) for c in consumers]).all(dim=0)
    zero_filter = _per_channel_zero(producer.weight, 0)
    constant = _constant_output(producer, norm)
    zero = zero_filter & (constant == 0) & ~unread
    can_fold = all(isinstance(c, nn.Linear) and c.bias is not None for c in consumers)
    folded = zero_filter & (constant != 0) & ~unread if can_fold else torch.zeros_like(zero_filter)
    keep = ~(unread | zero | folded)
    if not bool(keep.any()):
        keep[0] = True  # a layer needs one channel; keeping an inert one changes nothing
        unread[0] = zero[0] = folded[0] = False
    if bool(keep.all()):
        return ChainRow(chain.producer, n, n, 0, 0, 0)
    slice_out = _sliced_conv if isinstance(producer, nn.Conv2d) else _sliced_linear
    _replace(model, chain.producer, slice_out(producer, keep, None))
    if norm is not None:
        _replace(model, chain.norm, _sliced_norm(norm, keep))
    for path, c in zip(chain.consumers, consumers):
        if isinstance(c, nn.Conv2d):
            _replace(model, path, _sliced_conv(c, None, keep))
        else:
            bias = None
            if bool(folded.any()):
                with torch.no_grad():
                    bias = c.bias.detach() + c.weight.detach()[:, folded] @ constant[folded]
            _replace(model, path, _sliced_linear(c, None, keep, bias))
    return ChainRow(chain.producer, n, int(keep.sum()), int(unread.sum()), int(zero.sum()), int(folded.sum()))


def _remove_units(model: nn.Module, units: Mapping[str, torch.Tensor], example: Any) -> list[ChainRow]:
    """A channel ticket's dead units removed with Torch-Pruning; one row per channel group."""
    from ticketlab.sparsity.coupling import compact_channels  # Torch-Pruning, only for channel tickets

    compact_channels(model, example, units)
    rows = []
    for name, alive in units.items():
        total, kept = alive.numel(), max(1, int(alive.sum()))  # an emptied group keeps one inert channel
        rows.append(ChainRow(name.removesuffix(".weight"), total, kept, 0, total - kept, 0))
    return rows


def compact(model: nn.Module, units: Optional[Mapping[str, torch.Tensor]] = None, example: Any = None, *,
            rules: bool = True) -> CompactionReport:
    """Remove, in place, every hidden channel of `model` (eval mode) that provably cannot change
    its outputs (see the module docstring): a channel ticket's removed `units` (alive channels per
    group, traced on `example`) first, then (`rules`) the zero channels the chain rules find;
    returns what was removed where."""
    report = CompactionReport(params_before=sum(p.numel() for p in model.parameters()))
    if units:
        report.rows += _remove_units(model, units, example)
    if not rules:
        report.params_after = sum(p.numel() for p in model.parameters())
        return report
    for chain in find_chains(model):
        row = _compact_chain(model, chain)
        if row is not None:
            report.rows.append(row)
    report.params_after = sum(p.numel() for p in model.parameters())
    return report
