"""Saliency scores of pruning at initialisation, as pure functions of a network and its inputs.

- **SNIP** (Lee et al., ICLR 2019): |g ⊙ w|, g = ∂L/∂w summed over the given batches — the
  connection sensitivity |∂L/∂c| at c = 1.
- **GraSP** (Wang et al., ICLR 2020): S = −w ⊙ (H g), g the gradient and H the Hessian of L in the
  scored weights; H g by double backprop, ∂(ḡᵀ ∂L/∂w)/∂w with ḡ held constant. GraSP removes the
  weights of *largest* S (the registry says so with `keep_high=False`).
- **SynFlow** (Tanaka et al., NeurIPS 2020): the network with every parameter and buffer replaced
  by its absolute value (the |w| linearisation), in eval mode (BatchNorm applies its running
  statistics, as in the paper's code), fed one all-ones input; R = sum of the outputs, the score
  is ∂R/∂w ⊙ w. No data is used. It runs in float64: R is a product over layers and overflows
  float32 in deep nets (ResNet-50's R at init is ~1e70).

SNIP and GraSP run the network in train mode (BatchNorm normalises with batch statistics, as in a
training step); each batch's forward runs under the same fixed RNG seed in every pass, so GraSP's
two passes see the same dropout draws. Every function works on a deep copy with the mask applied
first: the model passed in (weights, buffers, grads, mode, RNG) is left as it was.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

from ticketlab.errors import TicketlabError

LossFn = Callable[[nn.Module, Any], torch.Tensor]  # (model, batch) → scalar loss
Scores = dict[str, torch.Tensor]


@dataclass(frozen=True)
class ScoreInputs:
    """What a score needs: the network at the rewind point, the scored weights' names, a loss of
    one batch and the batches (SNIP, GraSP), one input sample's shape source (SynFlow)."""

    model: nn.Module
    names: Sequence[str]
    loss_fn: LossFn
    batches: Sequence[Any]
    example_input: torch.Tensor  # one batch of inputs; SynFlow uses ones shaped like its first sample


def _devices(model: nn.Module) -> list[int]:
    return sorted({p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"})


def _masked_copy(model: nn.Module, names: Sequence[str], mask: Mapping[str, torch.Tensor],
                 dtype: torch.dtype | None = None) -> tuple[nn.Module, list[torch.Tensor]]:
    net = copy.deepcopy(model)
    if dtype is not None:
        net.to(dtype)
    params = dict(net.named_parameters())
    missing = [n for n in names if n not in params]
    if missing:
        raise TicketlabError(f"pruning at init: no parameter named {missing[0]!r} in the model")
    weights = [params[n] for n in names]
    with torch.no_grad():
        for n, w in zip(names, weights):
            if n in mask:
                w.mul_(mask[n].to(w.device, w.dtype))
    for w in weights:
        w.requires_grad_(True)
    return net, weights


def _batch_losses(net: nn.Module, inputs: ScoreInputs) -> Any:
    """Yield each batch's loss, computed under a fixed RNG seed per batch (same draws every pass)."""
    for i, batch in enumerate(inputs.batches):
        with torch.random.fork_rng(devices=_devices(net)):
            torch.manual_seed(i)
            yield inputs.loss_fn(net, batch)


def _train_mode_copy(inputs: ScoreInputs, mask: Mapping[str, torch.Tensor],
                     what: str) -> tuple[nn.Module, list[torch.Tensor]]:
    if not inputs.batches:
        raise TicketlabError(f"{what}: needs at least one training batch (prune.score_batches)")
    net, weights = _masked_copy(inputs.model, inputs.names, mask)
    net.train()
    return net, weights


def _grad_sum(net: nn.Module, weights: list[torch.Tensor], inputs: ScoreInputs) -> list[torch.Tensor]:
    total = [torch.zeros_like(w) for w in weights]
    for loss in _batch_losses(net, inputs):
        for t, g in zip(total, torch.autograd.grad(loss, weights, allow_unused=True)):
            if g is not None:
                t.add_(g)
    return total


def _check_finite(scores: Scores, what: str) -> Scores:
    bad = [n for n, s in scores.items() if not bool(torch.isfinite(s).all())]
    if bad:
        raise TicketlabError(f"{what} scores are not finite in {', '.join(bad[:3])}: the loss or the network "
                             "output overflows at the rewind point")
    return scores


def snip_scores(inputs: ScoreInputs, mask: Mapping[str, torch.Tensor]) -> Scores:
    """|∂L/∂w ⊙ w| per scored weight, L summed over `inputs.batches`."""
    net, weights = _train_mode_copy(inputs, mask, "snip")
    grads = _grad_sum(net, weights, inputs)
    return _check_finite({n: (g * w).detach().abs() for n, g, w in zip(inputs.names, grads, weights)}, "snip")


def grasp_scores(inputs: ScoreInputs, mask: Mapping[str, torch.Tensor]) -> Scores:
    """S = −w ⊙ (H g) per scored weight, g and H of L summed over `inputs.batches`."""
    net, weights = _train_mode_copy(inputs, mask, "grasp")
    g = _grad_sum(net, weights, inputs)
    hg = [torch.zeros_like(w) for w in weights]
    for loss in _batch_losses(net, inputs):
        grads = torch.autograd.grad(loss, weights, create_graph=True, allow_unused=True)
        z = sum((gi * gr).sum() for gi, gr in zip(g, grads) if gr is not None)
        if not isinstance(z, torch.Tensor) or not z.requires_grad:
            continue  # the loss does not reach the scored weights twice (a linear model): H g = 0
        for t, h in zip(hg, torch.autograd.grad(z, weights, allow_unused=True)):
            if h is not None:
                t.add_(h)
    return _check_finite({n: (-w * h).detach() for n, w, h in zip(inputs.names, weights, hg)}, "grasp")


def synflow_scores(inputs: ScoreInputs, mask: Mapping[str, torch.Tensor]) -> Scores:
    """∂R/∂w ⊙ w on the |·|-linearised network, R = sum of its output for an all-ones input."""
    net, weights = _masked_copy(inputs.model, inputs.names, mask, dtype=torch.float64)
    with torch.no_grad():
        for t in net.state_dict().values():  # parameters and buffers share storage with the state dict
            if t.is_floating_point():
                t.abs_()
    net.eval()
    x = inputs.example_input
    if not isinstance(x, torch.Tensor) or x.dim() < 1 or x.shape[0] < 1:
        raise TicketlabError("synflow: needs a model whose input is a batch tensor (e.g. images N×C×H×W)")
    ones = torch.ones((1, *x.shape[1:]), dtype=torch.float64, device=weights[0].device)
    out = net(ones)
    if not isinstance(out, torch.Tensor):
        raise TicketlabError("synflow: the model's output is not a tensor; SynFlow scores networks that map "
                             "an input tensor to an output tensor (classifiers)")
    grads = torch.autograd.grad(out.sum(), weights, allow_unused=True)
    scores = {n: (torch.zeros_like(w) if g is None else g * w).detach()  # float64: see the module docstring
              for n, g, w in zip(inputs.names, grads, weights)}
    return _check_finite(scores, "synflow")


SCORE_FUNCTIONS: dict[str, Callable[[ScoreInputs, Mapping[str, torch.Tensor]], Scores]] = {
    "snip": snip_scores, "grasp": grasp_scores, "synflow": synflow_scores,
}
