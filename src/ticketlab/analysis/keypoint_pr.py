"""Keypoint AP after each error is fixed, after Ronchi & Perona (ICCV 2017), paper 001 App. C.2 Fig. 9.

Counting errors (`keypoint_errors.py`) says how often each happens; Ronchi & Perona ask what each
*costs*: the precision–recall curve and AP once every keypoint of one error type is corrected. Here a
keypoint is corrected by moving it onto its own ground-truth keypoint, for the detections that the
error analysis matches to a person (same greedy matching, same categories Miss, Swap, Inversion,
Jitter). The rows are
  Original                      the detections as they are;
  Miss / Swap / Inversion / Jitter   that one error type fixed, the others left;
  All keypoint errors           the four fixed together;
  + no background FP            and the detections matched to nobody removed;
  + no false negatives          and the people no detection matched ignored (COCO's ignore flag),
the last two cumulative as in Ronchi & Perona's figure. Every row is scored by COCO's own keypoint
evaluation (faster-coco-eval, OKS): AP@[.5:.95], AP50, and the curve at OKS 0.5. Ronchi & Perona's
"optimal score" row (rescoring by the best achievable OKS) is not drawn.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from ticketlab.analysis.keypoint_errors import classify_keypoints, match_detections
from ticketlab.tasks.coco_eval import run_cocoeval

FIXABLE = ("Miss", "Swap", "Inversion", "Jitter")
ROWS = ("Original", *FIXABLE, "All keypoint errors", "+ no background FP", "+ no false negatives")
CURVE_OKS = 0.5


@dataclass
class FixedCurve:
    row: str
    ap: float                 # keypoints AP@[.5:.95]
    ap50: float
    recall: np.ndarray        # COCO's 101 recall points
    precision: np.ndarray     # interpolated precision there at OKS 0.5 (mean over categories)


def fix_keypoints(gt: Mapping[str, Any], results: Sequence[Mapping[str, Any]], cat_ids: Sequence[int],
                  sigmas: Sequence[float], fix: Sequence[str], match_oks: float = 0.1) -> list[dict[str, Any]]:
    """`results` with every keypoint whose error category is in `fix` moved onto its own
    ground-truth keypoint (for detections matched to a person; the rest unchanged)."""
    sig = np.asarray(sigmas, dtype=float)
    found = match_detections(gt, results, cat_ids, sigmas, match_oks)
    fixed = {id(m.result): m for m in found.matches}
    out = []
    for r in results:
        m = fixed.get(id(r))
        if m is None or not fix:
            out.append(dict(r))
            continue
        det = np.asarray(r["keypoints"], dtype=float).reshape(-1, 3)
        own = np.asarray(m.own["keypoints"], dtype=float).reshape(-1, 3)
        labelled = np.flatnonzero(own[:, 2] > 0)
        for j, category in zip(labelled, classify_keypoints(det, m.own, m.others, sig)):
            if category in fix:
                det[j, :2] = own[j, :2]
        out.append({**r, "keypoints": det.reshape(-1).tolist()})
    return out


def _score(row: str, gt: Mapping[str, Any], results: Sequence[Mapping[str, Any]],
           cat_ids: Sequence[int]) -> FixedCurve:
    ev = run_cocoeval(gt, results, "keypoints", cat_ids)
    ev.summarize()
    ap, ap50 = (float(v) for v in np.asarray(ev.stats)[:2])
    t = int(np.argmin(np.abs(ev.params.iouThrs - CURVE_OKS)))
    p = ev.eval["precision"][t, :, :, 0, -1]  # R × K, area all, most detections
    p = np.where(p > -1, p, np.nan)
    curve = np.nan_to_num(np.nanmean(p, axis=1)) if p.size else np.zeros(len(ev.params.recThrs))
    return FixedCurve(row, ap, ap50, np.asarray(ev.params.recThrs), curve)


def keypoint_fix_curves(gt: Mapping[str, Any], results: Sequence[Mapping[str, Any]], cat_ids: Sequence[int],
                        sigmas: Sequence[float], match_oks: float = 0.1) -> list[FixedCurve]:
    """One `FixedCurve` per row of `ROWS` (module docstring)."""
    curves = [_score("Original", gt, results, cat_ids)]
    for error in FIXABLE:
        curves.append(_score(error, gt, fix_keypoints(gt, results, cat_ids, sigmas, [error], match_oks), cat_ids))
    all_fixed = fix_keypoints(gt, results, cat_ids, sigmas, FIXABLE, match_oks)
    curves.append(_score("All keypoint errors", gt, all_fixed, cat_ids))
    found = match_detections(gt, results, cat_ids, sigmas, match_oks)
    background = {id(r) for r in found.background}
    kept = [f for r, f in zip(results, all_fixed) if id(r) not in background]
    curves.append(_score("+ no background FP", gt, kept, cat_ids))
    missed = {id(a) for a in found.missed}
    ignoring = copy.copy(dict(gt))
    ignoring["annotations"] = [{**a, "iscrowd": 1} if id(a) in missed else a for a in gt["annotations"]]
    curves.append(_score("+ no false negatives", ignoring, kept, cat_ids))
    return curves
