"""Masks that keep exactly the requested number of the highest- (or lowest-) scored alive weights.

Saliency scores are signed (GraSP) and inverting a ranking (the `invert` control) reverses it, so
`select.prune_smallest` (which ranks |w|) does not fit. Here every score is mapped to an int64
key whose order is the score's numeric order (IEEE bit pattern with the negative half flipped;
-0.0 sorts just below +0.0), computed in float64, which holds every float32 value exactly; the
k-th key over the alive entries gives the threshold. Ties at the threshold are broken as in
`select.py`: the weights removed first are those of the parameter whose name sorts first, then by
row-major flat index.

Counts: `level_keep` gives the number of weights IMP's rule (remove round(rate × alive) per level,
`strategies.n_to_remove`) leaves after `level` levels, over the whole scope or per tensor, so a
pruning-at-init level has exactly the sparsity of the IMP level with the same number; and
`exponential_keep` is SynFlow's schedule, alive × (target / alive)^(j / n) at iteration j of n.
"""

from __future__ import annotations

from typing import Mapping

import torch

from ticketlab.errors import TicketlabError
from ticketlab.sparsity.select import kept_count
from ticketlab.sparsity.strategies import n_to_remove

Mask = dict[str, torch.Tensor]
_LOW63 = (1 << 63) - 1


def order_keys(scores: torch.Tensor, keep_high: bool = True) -> torch.Tensor:
    """int64 keys, ascending in removal order: lowest score first (`keep_high`), else highest first."""
    bits = scores.detach().to(torch.float64).contiguous().view(torch.int64)
    keys = bits ^ ((bits >> 63) & _LOW63)
    return keys if keep_high else ~keys


def _remove_lowest(keys: Mapping[str, torch.Tensor], mask: Mapping[str, torch.Tensor], k: int) -> Mask:
    names = sorted(mask)
    alive_idx = {n: mask[n].reshape(-1).nonzero().squeeze(1) for n in names}
    alive = sum(int(i.numel()) for i in alive_idx.values())
    if not 0 <= k <= alive:
        raise ValueError(f"cannot remove {k} of {alive} alive weights")
    out = {n: mask[n].clone() for n in names}
    if k == 0:
        return {n: out[n] for n in mask}
    cand = torch.cat([keys[n].reshape(-1)[alive_idx[n]].cpu() for n in names])
    threshold = cand.kthvalue(k).values
    remove = cand < threshold
    ties = (cand == threshold).nonzero().squeeze(1)
    remove[ties[: k - int(remove.sum())]] = True
    for n, part in zip(names, torch.split(remove, [int(alive_idx[n].numel()) for n in names])):
        out[n].view(-1)[alive_idx[n][part.to(alive_idx[n].device)]] = False
    return {n: out[n] for n in mask}


def _check(scores: Mapping[str, torch.Tensor], mask: Mapping[str, torch.Tensor]) -> None:
    for n, m in mask.items():
        if n not in scores or tuple(scores[n].shape) != tuple(m.shape):
            raise TicketlabError(f"scores[{n!r}]: missing or not shaped like the mask {tuple(m.shape)}")
        if bool(torch.isnan(scores[n][m]).any()):
            raise TicketlabError(f"scores[{n!r}]: NaN among the alive weights")


def keep_top(scores: Mapping[str, torch.Tensor], mask: Mapping[str, torch.Tensor], keep: int | Mapping[str, int],
             *, keep_high: bool = True) -> Mask:
    """Keep exactly `keep` alive weights: the highest-scored (or lowest, `keep_high=False`) ones.

    `keep` is one count over all tensors (a global ranking) or one count per tensor (layer-wise).
    Pruned weights never come back; the result has the mask's names, order and devices.
    """
    _check(scores, mask)
    keys = {n: order_keys(scores[n].to(mask[n].device), keep_high) for n in mask}
    if isinstance(keep, Mapping):
        out: Mask = {}
        for n in mask:
            alive = kept_count(mask[n])
            out.update(_remove_lowest({n: keys[n]}, {n: mask[n]}, alive - _in_range(keep[n], alive, n)))
        return {n: out[n] for n in mask}
    alive = sum(kept_count(m) for m in mask.values())
    return _remove_lowest(keys, mask, alive - _in_range(keep, alive, "the scope"))


def _in_range(keep: int, alive: int, what: str) -> int:
    if not 0 <= keep <= alive:
        raise TicketlabError(f"{what}: cannot keep {keep} of {alive} alive weights")
    return keep


def level_keep(mask: Mapping[str, torch.Tensor], rate: float, level: int, *, layerwise: bool) -> int | dict[str, int]:
    """How many of `mask`'s alive weights IMP keeps after `level` levels at `rate` (total or per tensor)."""
    def after(alive: int) -> int:
        for _ in range(level):
            alive -= n_to_remove(rate, alive)
        return alive

    if layerwise:
        return {n: after(kept_count(m)) for n, m in mask.items()}
    return after(sum(kept_count(m) for m in mask.values()))


def exponential_keep(alive: int, target: int, iteration: int, iterations: int) -> int:
    """SynFlow's exponential schedule: round(alive × (target/alive)^(iteration/iterations)); the last
    iteration keeps exactly `target`."""
    if iteration >= iterations or alive == 0:
        return target
    return max(target, min(alive, round(alive * (target / alive) ** (iteration / iterations))))
