"""A model's channel groups (`channels.ChannelGroup`), found with Torch-Pruning's DependencyGraph.

Torch-Pruning traces one forward pass through autograd and records, for each conv/linear layer's
output channels, every tensor slice that must be removed with them: the BatchNorm after it, the
other producers added into the same residual stream (BasicBlock / Bottleneck sums, downsample
convs, FPN inputs), depthwise convs, concatenations, and the inputs of every consumer (with the
index mapping of a flatten). We keep its coupling and describe it by parameter name, so the mask
math (`channels.py`) is pure and the graph is traced once per experiment.

A group is prunable only when removing its channels leaves the network's interface intact and the
mask can describe it: every layer producing the channels is in the pruning scope (`prunable`),
none of them is an output layer (its output reaches the model's outputs directly: a classifier's
`fc`, a detector's heads), and every other member is a conv, linear or BatchNorm layer Torch-Pruning
slices exactly (grouped convs other than depthwise, transposed convs and other parametrised layers
are left whole).
"""

from __future__ import annotations

import copy
from typing import Any, Callable, Collection

import torch
import torch_pruning as tp
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

from ticketlab.sparsity.channels import ChannelGroup, Coupled

NORMS = (nn.modules.batchnorm._BatchNorm, FrozenBatchNorm2d)


class FrozenBatchNormPruner(tp.pruner.function.BasePruningFunc):
    """torchvision's FrozenBatchNorm2d (buffers, no parameters) for Torch-Pruning, like its BatchNorm pruner."""

    def prune_out_channels(self, layer: nn.Module, idxs) -> nn.Module:
        keep = sorted(set(range(layer.weight.numel())) - set(idxs))
        for name in ("weight", "bias", "running_mean", "running_var"):
            setattr(layer, name, getattr(layer, name).data[keep])
        return layer

    prune_in_channels = prune_out_channels

    def get_out_channels(self, layer: nn.Module) -> int:
        return layer.weight.numel()

    get_in_channels = get_out_channels


def dependency_graph(model: nn.Module, example: Any, forward: Callable[[nn.Module, Any], Any],
                     outputs: Callable[[Any], Any]) -> tp.DependencyGraph:
    """Torch-Pruning's graph of `model` (traced in eval mode on `example`; grad enabled, as it needs)."""
    with torch.enable_grad():
        return tp.DependencyGraph().build_dependency(
            model, example, forward_fn=forward, output_transform=outputs,
            customized_pruners={FrozenBatchNorm2d: FrozenBatchNormPruner()}, verbose=False)


def output_layers(graph: tp.DependencyGraph) -> list[nn.Module]:
    """Conv/linear layers whose outputs feed no other traced layer: they produce the model's outputs."""
    return [m for m, node in graph.module2node.items()
            if isinstance(m, (nn.Conv2d, nn.Linear)) and not node.outputs]


def _coupled(name: str, dim: int, idxs: list[int], root: list[int], extent: int) -> Coupled:
    return Coupled(name, dim, torch.tensor(idxs, dtype=torch.long), torch.tensor(root, dtype=torch.long), extent)


def _describe(graph: tp.DependencyGraph, group: tp.Group, names: dict[nn.Module, str],
              prunable: Collection[str]) -> ChannelGroup | None:
    """The group by parameter name, or None when it cannot be pruned (see the module docstring)."""
    rows, columns, held, gammas = [], [], [], []
    for item in group.items:
        module, handler = item.dep.target.module, item.dep.handler
        if not isinstance(module, nn.Module):
            return None  # an unwrapped nn.Parameter
        if not any(True for _ in module.parameters(recurse=False)) and not isinstance(module, NORMS):
            continue  # elementwise ops, reshapes, pooling: nothing to slice
        path = names[module]
        idxs, root = list(item.idxs), list(item.root_idxs)
        is_out = graph.is_out_channel_pruning_fn(handler)
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            if isinstance(module, nn.Conv2d) and (module.transposed or 1 < module.groups < module.out_channels):
                return None
            depthwise = isinstance(module, nn.Conv2d) and module.groups > 1
            if is_out or depthwise:
                if f"{path}.weight" not in prunable:
                    return None
                rows.append(_coupled(f"{path}.weight", 0, idxs, root, module.weight.shape[0]))
                if module.bias is not None:
                    held.append(_coupled(f"{path}.bias", 0, idxs, root, module.bias.shape[0]))
            else:
                columns.append(_coupled(f"{path}.weight", 1, idxs, root, module.weight.shape[1]))
        elif isinstance(module, NORMS):
            if module.weight is None:
                return None
            n = module.weight.shape[0]
            gammas.append(_coupled(f"{path}.weight", 0, idxs, root, n))
            held += [gammas[-1], _coupled(f"{path}.bias", 0, idxs, root, n)]
        else:
            return None
    if not rows:
        return None
    size = len(group[0].idxs)
    return ChannelGroup(rows[0].param, size, tuple(rows), tuple(columns), tuple(held), tuple(gammas))


def channel_groups(model: nn.Module, example: Any, prunable: Collection[str], *,
                   forward: Callable[[nn.Module, Any], Any], outputs: Callable[[Any], Any]) -> list[ChannelGroup]:
    """Every prunable channel group of `model` (traced on a copy, so the model is not touched), in
    the model's module order."""
    traced = copy.deepcopy(model).eval()
    graph = dependency_graph(traced, example, forward, outputs)
    names = {m: n for n, m in traced.named_modules()}
    prunable = set(prunable)
    found = []
    for group in graph.get_all_groups(ignored_layers=output_layers(graph), root_module_types=(nn.Conv2d, nn.Linear)):
        described = _describe(graph, group, names, prunable)
        if described is not None:
            found.append(described)
    order = {f"{n}.weight": i for i, n in enumerate(names.values())}
    return sorted(found, key=lambda g: order.get(g.name, len(order)))


def compact_channels(model: nn.Module, example: Any, alive: dict[str, torch.Tensor], *,
                     forward: Callable[[nn.Module, Any], Any], outputs: Callable[[Any], Any]) -> None:
    """Remove, in place, every dead unit of each group (`alive`, keyed by the group's root weight)
    with Torch-Pruning: the model becomes a smaller dense one of the same class."""
    graph = dependency_graph(model, example, forward, outputs)
    modules = dict(model.named_modules())
    for name, keep in alive.items():
        dead = (~keep.cpu()).nonzero().squeeze(1).tolist()
        if not dead:
            continue
        if len(dead) == keep.numel():
            dead = dead[1:]  # a layer needs one channel; the one kept outputs 0 everywhere
        root = modules[name.removesuffix(".weight")]
        handler = graph.get_pruner_of_module(root).prune_out_channels
        graph.get_pruning_group(root, handler, dead).prune()
