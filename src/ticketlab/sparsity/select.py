"""Exact k-smallest-magnitude selection over many tensors without sorting them.

Magnitude pruning needs "remove the k alive weights of smallest |w|", across tens of millions of
weights (a Mask R-CNN has ~44M conv/linear weights). Sorting (or `torch.topk`, which is what
`torch.nn.utils.prune.global_unstructured` does over one concatenated copy of everything) costs
time and several full-size temporaries. Here we use that, for IEEE floats, the order of |w| is the
order of the bit pattern of w with the sign bit cleared, read as an integer. So:

1. One pass per tensor: the top 16 bits of each alive weight's pattern (sign cleared → 15 bits, a
   bucket per 1/128th of a binade for float32) are histogrammed with `torch.bincount`.
   Pruned weights are put in bucket 0 and subtracted from it afterwards.
2. The cumulative histogram gives the bucket holding the k-th smallest magnitude.
3. Only the (few) alive weights in that bucket are gathered; `torch.kthvalue` on their full keys
   gives the exact threshold value T.
4. New mask = bucket above the threshold bucket, plus the candidates above T, plus the ties at T
   that are not needed.

Ties at T are broken deterministically: the weights removed first are those of the parameter
whose *name sorts first* (lexicographic), then by row-major flat index. Sorting by name (not by
dict order) makes the result independent of how the mask dict was built or loaded.

NaN magnitudes in an alive weight raise TicketlabError (a diverged model should not be pruned
silently); +inf ranks above every finite value.
"""

from __future__ import annotations

import sys
from typing import Mapping

import torch

from ticketlab.errors import TicketlabError

_BUCKETS = 1 << 15  # top 16 bits of the pattern, sign bit cleared
_BITS = {torch.float16: torch.int16, torch.bfloat16: torch.int16,
         torch.float32: torch.int32, torch.float64: torch.int64}
_NAN_FIRST_BUCKET = {torch.float16: 0x7C01, torch.bfloat16: 0x7F81,
                     torch.float32: 0x7F81, torch.float64: 0x7FF1}


def common_float_dtype(dtypes: set[torch.dtype]) -> torch.dtype:
    """The dtype all magnitudes are compared in: one that holds every input dtype exactly."""
    for dt in dtypes:
        if dt not in _BITS:
            raise TicketlabError(f"magnitude pruning: weights must be floating point, got {dt}")
    if len(dtypes) == 1:
        return next(iter(dtypes))
    return torch.float64 if torch.float64 in dtypes else torch.float32


def _top_halfword(flat: torch.Tensor) -> torch.Tensor:
    """The 16 most significant bits of each element's pattern, as int16 (a view when possible)."""
    if flat.element_size() == 2:
        return flat.view(torch.int16)
    if sys.byteorder == "little":
        per = flat.element_size() // 2
        return flat.view(torch.int16).view(-1, per)[:, per - 1]
    shift = 8 * flat.element_size() - 16  # big-endian hosts: compute it instead of viewing it
    return (flat.view(_BITS[flat.dtype]) >> shift).to(torch.int16)


def full_key(values: torch.Tensor) -> torch.Tensor:
    """|values| as order-preserving int64 keys (the bit pattern with the sign bit cleared)."""
    bits = values.view(_BITS[values.dtype]).to(torch.int64)
    return bits & ((1 << (8 * values.element_size() - 1)) - 1)


def kept_count(m: torch.Tensor) -> int:
    """Number of True entries of a bool mask (count_nonzero is ~10x faster than sum on bool)."""
    return int(torch.count_nonzero(m))


def prune_smallest(
    scores: Mapping[str, torch.Tensor],
    mask: Mapping[str, torch.Tensor],
    k: int,
    alive_total: int | None = None,
) -> dict[str, torch.Tensor]:
    """New masks with the `k` alive entries of smallest |score| switched off.

    `scores` and `mask` have the same names and shapes; only alive entries (mask True) compete and
    pruned entries stay pruned. `alive_total` (the number of True entries, if the caller already
    counted them) saves a pass. Returns fresh bool tensors (input order, same devices).
    """
    names = sorted(mask)  # tie order: name, then flat index
    if alive_total is None:
        alive_total = sum(kept_count(mask[n]) for n in names)
    if not 0 <= k <= alive_total:
        raise ValueError(f"cannot remove {k} of {alive_total} alive weights")
    if k == 0:
        return {n: mask[n].clone() for n in mask}
    if k == alive_total:
        return {n: torch.zeros_like(mask[n]) for n in mask}
    dtype = common_float_dtype({scores[n].dtype for n in names})

    flats: dict[str, torch.Tensor] = {}
    keys: dict[str, torch.Tensor] = {}
    hists: dict[str, torch.Tensor] = {}
    total = torch.zeros(_BUCKETS, dtype=torch.int64)
    pruned_total = 0
    for n in names:
        w = scores[n].detach()
        flat = w.to(dtype).reshape(-1)  # no copy when dtype matches and w is contiguous
        m = mask[n].reshape(-1)
        key = torch.where(m, _top_halfword(flat), 0)
        key.bitwise_and_(0x7FFF)
        hist = torch.bincount(key, minlength=_BUCKETS).cpu()
        flats[n], keys[n], hists[n] = flat, key, hist
        total += hist
        pruned_total += m.numel()
    pruned_total -= alive_total
    total[0] -= pruned_total  # pruned weights were parked in bucket 0

    nan_from = _NAN_FIRST_BUCKET[dtype]
    if int(total[nan_from:].sum()) > 0:
        bad = [n for n in names if bool(torch.isnan(scores[n].detach()[mask[n]]).any())]
        raise TicketlabError(f"magnitude pruning: NaN in kept weights of {', '.join(bad) or '?'}; "
                             "the model has diverged, fix training before pruning")

    cum = total.cumsum(0)
    bucket = int(torch.searchsorted(cum, torch.tensor([k]))[0])  # first bucket with cum >= k
    need = k - (int(cum[bucket - 1]) if bucket > 0 else 0)  # how many to remove in that bucket

    # Candidates: alive entries in the threshold bucket, in tie order (name, flat index).
    cand_names, cand_idx, cand_keys = [], [], []
    for n in names:
        if int(hists[n][bucket]) == 0:
            continue
        sel = keys[n] == bucket
        if bucket == 0:
            sel &= mask[n].reshape(-1)
        idx = sel.nonzero().squeeze(1)
        cand_names.append(n)
        cand_idx.append(idx)
        cand_keys.append(full_key(flats[n][idx]).cpu())
    ck = torch.cat(cand_keys)
    threshold = ck.kthvalue(need).values
    remove = ck < threshold
    ties = (ck == threshold).nonzero().squeeze(1)
    remove[ties[: need - int(remove.sum())]] = True
    keep_parts = dict(zip(cand_names, torch.split(~remove, [len(i) for i in cand_idx])))
    cand_by_name = dict(zip(cand_names, cand_idx))

    out: dict[str, torch.Tensor] = {}
    for n in mask:
        new = keys[n] > bucket
        if n in cand_by_name:
            idx = cand_by_name[n]
            new[idx[keep_parts[n].to(idx.device)]] = True
        out[n] = new.view(mask[n].shape)
        del keys[n]
    return out
