"""Keep pruned weights exactly zero during training, on a plain model.

`torch.nn.utils.prune` reparametrises (weight = weight_orig * weight_mask, recomputed by a forward
pre-hook): state_dict keys change, every forward pays a multiply, checkpoints double in size. A
ticket's weights are instead stored plainly with zeros at pruned positions, and this class keeps
them there by zeroing, at the right moments, the pruned entries of the weights, their gradients
and every optimizer state tensor shaped like them (momentum_buffer, exp_avg, exp_avg_sq, …).

Per training step:   loss.backward(); enf.mask_grads(); [clip]; opt.step(); enf.after_step(opt)

`after_step` zeroes weights and optimizer state. It skips that work only when it can prove there is
nothing to do: the optimizer is one whose update is elementwise and exactly 0 where gradient,
weight and state are 0 (SGD, Adam, AdamW, with any momentum / Nesterov / weight decay / amsgrad),
`mask_grads` ran for this step, no weight was written since the previous `after_step` other than
by this step (checked with the tensors' version counters) and the state tensors are the ones it
already cleaned. Anything else (a rewound dense state, `load_state_dict`, another optimizer) takes
the full path, so pruned weights are exactly 0 after every `after_step`.

Parameters are looked up by name once; a `copy.deepcopy` of the model is plain (nothing is attached
to it) and `rebind(copy)` gives an enforcer for the copy. Zeroing is one fused `torch._foreach_mul_`
per (device, dtype) by cached 0/1 factors (measured ~7x faster than `masked_fill_` on CPU; costs
one weight-sized tensor of memory per dtype). Multiplying turns a negative pruned value into -0.0,
which compares equal to 0.
"""

from __future__ import annotations

import weakref
from typing import Iterable, Mapping

import torch
from torch import nn

from ticketlab.errors import TicketlabError

# Optimizers whose update of an entry is exactly 0 when its grad, weight and state are all 0.
ELEMENTWISE_OPTIMIZERS: tuple[type, ...] = (torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW)


class MaskEnforcer:
    """Zeroes the pruned entries of a model's weights, gradients and optimizer state."""

    def __init__(self, model: nn.Module, mask: Mapping[str, torch.Tensor]):
        params = dict(model.named_parameters())
        missing = [n for n in mask if n not in params]
        if missing:
            raise TicketlabError(f"mask names not in the model: {', '.join(missing[:10])}"
                                 + (f" (+{len(missing) - 10} more)" if len(missing) > 10 else ""))
        self.mask = dict(mask)
        self.names: list[str] = []
        self._params: list[nn.Parameter] = []
        self._pruned: list[torch.Tensor] = []  # True = pruned; only tensors with something pruned
        for name, m in mask.items():
            p = params[name]
            if tuple(m.shape) != tuple(p.shape):
                raise TicketlabError(f"mask[{name!r}]: shape {tuple(m.shape)} does not match the "
                                     f"parameter's {tuple(p.shape)}")
            if m.dtype != torch.bool:
                raise TicketlabError(f"mask[{name!r}]: expected a bool tensor, got {m.dtype}")
            pruned = ~m.to(p.device)
            if bool(pruned.any()):
                self.names.append(name)
                self._params.append(p)
                self._pruned.append(pruned)
        self._factors: dict[tuple[int, torch.dtype, torch.device], torch.Tensor] = {}
        self._versions: list[int] | None = None  # weight versions right after our last zeroing
        self._clean_state: tuple[weakref.ref, list[weakref.ref]] | None = None  # last cleaned optimizer
        self._grads_masked_clean = False

    def rebind(self, model: nn.Module) -> "MaskEnforcer":
        """An enforcer with the same mask for another model (e.g. a deepcopy)."""
        return MaskEnforcer(model, self.mask)

    # -- zeroing ---------------------------------------------------------------------------------

    def _zero(self, tensors: Iterable[torch.Tensor | None]) -> None:
        """Zero the pruned entries of tensors[i] (aligned with self._pruned; None skipped), with one
        fused multiply by a cached 0/1 factor per (device, dtype) group."""
        fused: dict[tuple[torch.device, torch.dtype], tuple[list, list]] = {}
        for i, t in enumerate(tensors):
            if t is None:
                continue
            ts, fs = fused.setdefault((t.device, t.dtype), ([], []))
            ts.append(t)
            fs.append(self._factor(i, t.dtype, t.device))
        for ts, fs in fused.values():
            torch._foreach_mul_(ts, fs)

    def _factor(self, i: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        key = (i, dtype, device)
        f = self._factors.get(key)
        if f is None:
            f = self._factors[key] = (~self._pruned[i].to(device)).to(dtype)
        return f

    def _record_versions(self) -> None:
        self._versions = [p._version for p in self._params]

    def _weights_untouched(self) -> bool:
        return self._versions is not None and self._versions == [p._version for p in self._params]

    def zero_weights(self) -> None:
        """Set pruned weights to 0 (after building, rewinding or loading weights)."""
        with torch.no_grad():
            self._zero(self._params)
        self._record_versions()

    def mask_grads(self) -> None:
        """Zero the gradients of pruned weights; call after backward, before clipping/stepping."""
        self._grads_masked_clean = self._weights_untouched()
        with torch.no_grad():
            self._zero([p.grad for p in self._params])

    def _state_tensors(self, optimizer: torch.optim.Optimizer) -> list[list[torch.Tensor]]:
        """Per masked parameter, its optimizer state tensors shaped like it."""
        out = []
        for p in self._params:
            state = optimizer.state.get(p, {})
            out.append([v for v in state.values() if torch.is_tensor(v) and v.shape == p.shape])
        return out

    def mask_optimizer_state(self, optimizer: torch.optim.Optimizer) -> None:
        """Zero the pruned entries of every state tensor with the parameter's shape."""
        per_param = self._state_tensors(optimizer)
        with torch.no_grad():
            for slot in range(max((len(s) for s in per_param), default=0)):
                self._zero([s[slot] if slot < len(s) else None for s in per_param])
        self._clean_state = (weakref.ref(optimizer), [weakref.ref(t) for s in per_param for t in s])

    def _state_already_clean(self, optimizer: torch.optim.Optimizer) -> bool:
        """True when the optimizer and its state tensors are the very objects we last cleaned."""
        if self._clean_state is None or self._clean_state[0]() is not optimizer:
            return False
        current = [t for s in self._state_tensors(optimizer) for t in s]
        refs = self._clean_state[1]
        return len(refs) == len(current) and all(r() is t for r, t in zip(refs, current))

    def after_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Re-zero pruned weights and optimizer state after `optimizer.step()` (skipped when provably
        still zero, see the module docstring)."""
        provably_zero = (
            self._grads_masked_clean
            and type(optimizer) in ELEMENTWISE_OPTIMIZERS
            and self._state_already_clean(optimizer)
        )
        self._grads_masked_clean = False
        if not provably_zero:
            self.mask_optimizer_state(optimizer)
            with torch.no_grad():
                self._zero(self._params)
        self._record_versions()


def with_followers(mask: Mapping[str, torch.Tensor], followers: Mapping[str, str]) -> dict[str, torch.Tensor]:
    """`mask` plus, for each follower whose leader is masked, the leader's mask under the follower's
    name (parameters that must stay pruned like another, e.g. MoCo's key encoder)."""
    return {**mask, **{f: mask[leader] for f, leader in followers.items() if leader in mask}}
