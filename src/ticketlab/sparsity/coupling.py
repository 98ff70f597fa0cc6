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
from typing import Any, Callable, Collection, Mapping, Optional

import torch
import torch_pruning as tp
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

from ticketlab.sparsity.channels import ChannelGroup, Coupled, apply_units, held_masks

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


def call(model: nn.Module, example: Any) -> Any:
    """How the graph is traced: the model called on the example as it is (a batch, or a list of images)."""
    return model(example)


Forward = Callable[[nn.Module, Any], Any]


def dependency_graph(model: nn.Module, example: Any, forward: Forward = call,
                     outputs: Optional[Callable[[Any], Any]] = None) -> tp.DependencyGraph:
    """Torch-Pruning's graph of `model` (traced in eval mode on `example`; grad enabled, as it needs)."""
    with torch.enable_grad():
        return tp.DependencyGraph().build_dependency(
            model, example, forward_fn=forward, output_transform=outputs,
            customized_pruners={FrozenBatchNorm2d: FrozenBatchNormPruner()}, verbose=False)


def output_layers(graph: tp.DependencyGraph) -> list[nn.Module]:
    """Conv/linear layers whose outputs reach a model output through no other conv/linear layer (a
    classifier's fc; an FPN's output convs, also the one LastLevelMaxPool pools): their channels are
    the model's interface."""
    stack = [node for node in graph.module2node.values() if not node.outputs]
    seen, found = set(), []
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        if isinstance(node.module, (nn.Conv2d, nn.Linear)):
            found.append(node.module)
        else:
            stack.extend(node.inputs)
    return found


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


def channel_groups(model: nn.Module, example: Any, prunable: Collection[str], *, forward: Forward = call,
                   outputs: Optional[Callable[[Any], Any]] = None) -> list[ChannelGroup]:
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
    found.sort(key=lambda g: order.get(g.name, len(order)))
    return exact_groups(model, example, found, forward)


def _removes_exactly(model: nn.Module, example: Any, groups: list[ChannelGroup], forward: Forward) -> bool:
    """Whether removing channel 0 of every group with Torch-Pruning computes what masking it does."""
    alive = {g.name: torch.arange(g.size) > 0 for g in groups}
    masked = copy.deepcopy(model).eval()
    state = masked.state_dict()
    touched = {c.param: torch.ones(state[c.param].shape, dtype=torch.bool) for g in groups for c in (*g.rows, *g.columns)}
    keep = {**apply_units(touched, groups, alive), **held_masks(groups, alive)}
    masked.load_state_dict({k: v * keep[k].to(v.device) if k in keep else v for k, v in state.items()})
    compacted = copy.deepcopy(masked)
    try:
        compact_channels(compacted, example, alive, forward=forward)
        with torch.no_grad():
            want, got = tp.utils.flatten_as_list(forward(masked, example)), tp.utils.flatten_as_list(forward(compacted, example))
    except (RuntimeError, ValueError, IndexError):  # a coupling the trace missed: shapes no longer fit
        return False
    return len(want) == len(got) and all(a.shape == b.shape and torch.allclose(a, b, rtol=1e-4, atol=1e-5)
                                         for a, b in zip(want, got))


def exact_groups(model: nn.Module, example: Any, groups: list[ChannelGroup], forward: Forward = call) -> list[ChannelGroup]:
    """The groups whose removal is checked to equal their masking (all at once, then halves of a failing
    set): a coupling the trace cannot see (e.g. through an op Torch-Pruning does not know) is dropped."""
    if not groups or _removes_exactly(model, example, groups, forward):
        return groups
    if len(groups) == 1:
        return []
    half = len(groups) // 2
    return exact_groups(model, example, groups[:half], forward) + exact_groups(model, example, groups[half:], forward)


def compact_channels(model: nn.Module, example: Any, alive: Mapping[str, torch.Tensor], *, forward: Forward = call,
                     outputs: Optional[Callable[[Any], Any]] = None) -> None:
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
