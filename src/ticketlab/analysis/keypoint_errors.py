"""Keypoint localisation errors after Ronchi & Perona ("Benchmarking and Error Diagnosis in
Multi-Instance Pose Estimation", ICCV 2017), as paper 001 App. C.2 compares them for the dense
model and its tickets.

COCO's keypoint AP rests on OKS, the mean over an instance's labelled keypoints of the keypoint
similarity ks = exp(−d² / (2 s² κ²)) (d: pixel distance, s² the instance's area, κ = 2σ of that
keypoint). Ronchi & Perona look at each predicted keypoint of a detection matched to a person:
- Good:      ks ≥ 0.85 with its own ground-truth keypoint (within the human error margin);
- Jitter:    0.5 ≤ ks < 0.85 (a small localisation error);
- Inversion: ks < 0.5 with its own keypoint, but ≥ 0.5 with another keypoint of the *same* person
             (typically the left/right counterpart);
- Swap:      ks < 0.5 with its own keypoint, but ≥ 0.5 with the *same* keypoint of another person;
- Miss:      none of these (a large localisation error).
Detections matched to no person are background false positives; people no detection matched are
missed instances. Matching follows COCO: per image and category, detections by descending score
(the top 20, COCO's keypoint maxDets), each to the unmatched person with the highest OKS — but
from OKS ≥ `match_oks` (0.1, our choice) rather than COCO's 0.5, so that badly placed keypoints are
diagnosed instead of turning their detection into a background false positive (a detection whose
OKS is below that with everyone, e.g. a skeleton mirrored as a whole, still counts as background).
People without a labelled keypoint are ignored, as COCO ignores them.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

KEYPOINT_ERRORS = ("Good", "Jitter", "Inversion", "Swap", "Miss")
GOOD_KS = 0.85
NEAR_KS = 0.5
MAX_DETS = 20


@dataclass
class KeypointErrors:
    """Counts over one set of detections: keypoints per category, and instance-level errors."""
    keypoints: dict[str, int] = field(default_factory=lambda: {e: 0 for e in KEYPOINT_ERRORS})
    matched: int = 0            # detections matched to a person
    background: int = 0         # detections matched to nobody (background false positives)
    missed: int = 0             # people no detection matched
    people: int = 0             # people with at least one labelled keypoint

    def shares(self) -> dict[str, float]:
        """Each keypoint category as a fraction of the keypoints classified (0 when none were)."""
        total = sum(self.keypoints.values())
        return {e: (n / total if total else 0.0) for e, n in self.keypoints.items()}


def keypoint_similarity(points: np.ndarray, gt: np.ndarray, area: float, sigmas: np.ndarray) -> np.ndarray:
    """ks[i, j] between predicted point i (x, y) and ground-truth keypoint j, with COCO's OKS terms."""
    d2 = ((points[:, None, :2] - gt[None, :, :2]) ** 2).sum(-1)
    kappa2 = (2.0 * np.asarray(sigmas, dtype=float)) ** 2
    return np.exp(-d2 / kappa2[None, :] / (area + np.spacing(1)) / 2.0)


def oks(det: np.ndarray, gt: np.ndarray, area: float, sigmas: np.ndarray) -> float:
    """Object keypoint similarity of a detection (K×3) with a person (K×3, v > 0 = labelled)."""
    labelled = gt[:, 2] > 0
    if not labelled.any():
        return 0.0
    ks = np.diag(keypoint_similarity(det, gt, area, sigmas))
    return float(ks[labelled].mean())


def _person(ann: Mapping[str, Any]) -> np.ndarray:
    return np.asarray(ann["keypoints"], dtype=float).reshape(-1, 3)


def classify_keypoints(det: np.ndarray, own: Mapping[str, Any], others: Sequence[Mapping[str, Any]],
                       sigmas: np.ndarray) -> list[str]:
    """The error category of each labelled keypoint of `own` as predicted by `det` (K×3)."""
    gt = _person(own)
    ks_own = keypoint_similarity(det, gt, own["area"], sigmas)        # [pred i, gt keypoint j]
    others_ks = [np.diag(keypoint_similarity(det, _person(o), o["area"], sigmas)) *
                 (_person(o)[:, 2] > 0) for o in others]               # same keypoint of each other person
    out = []
    for j in np.flatnonzero(gt[:, 2] > 0):
        ks = ks_own[j, j]
        if ks >= GOOD_KS:
            out.append("Good")
        elif ks >= NEAR_KS:
            out.append("Jitter")
        elif any(ks_own[j, m] >= NEAR_KS for m in np.flatnonzero(gt[:, 2] > 0) if m != j):
            out.append("Inversion")
        elif any(o[j] >= NEAR_KS for o in others_ks):
            out.append("Swap")
        else:
            out.append("Miss")
    return out


@dataclass
class Match:
    """One detection matched to a person (`own`), beside the other people of its image."""
    result: Mapping[str, Any]
    own: Mapping[str, Any]
    others: list[Mapping[str, Any]]


@dataclass
class Matching:
    matches: list[Match] = field(default_factory=list)
    background: list[Mapping[str, Any]] = field(default_factory=list)  # detections matched to nobody
    missed: list[Mapping[str, Any]] = field(default_factory=list)      # people no detection matched
    people: int = 0


def match_detections(gt: Mapping[str, Any], results: Sequence[Mapping[str, Any]], cat_ids: Sequence[int],
                     sigmas: Sequence[float], match_oks: float = 0.1) -> Matching:
    """Greedy COCO-style matching of keypoint `results` to the people of `gt` (module docstring)."""
    sig = np.asarray(sigmas, dtype=float)
    wanted = set(cat_ids)
    people: dict[tuple[int, int], list[Mapping[str, Any]]] = defaultdict(list)
    for ann in gt["annotations"]:
        if (ann["category_id"] in wanted and not ann.get("iscrowd", 0) and ann.get("keypoints")
                and (_person(ann)[:, 2] > 0).any()):
            people[(ann["image_id"], ann["category_id"])].append(ann)
    dets: dict[tuple[int, int], list[Mapping[str, Any]]] = defaultdict(list)
    for r in results:
        if r["category_id"] in wanted and "keypoints" in r:
            dets[(r["image_id"], r["category_id"])].append(r)
    out = Matching(people=sum(len(p) for p in people.values()))
    for key in sorted(set(people) | set(dets)):
        persons = people.get(key, [])
        taken: set[int] = set()
        for r in sorted(dets.get(key, []), key=lambda r: -r["score"])[:MAX_DETS]:
            det = _person(r)
            scores = [(oks(det, _person(p), p["area"], sig), i) for i, p in enumerate(persons) if i not in taken]
            best = max(scores, default=(0.0, -1))
            if best[0] < match_oks or best[1] < 0:
                out.background.append(r)
                continue
            taken.add(best[1])
            out.matches.append(Match(r, persons[best[1]], [p for i, p in enumerate(persons) if i != best[1]]))
        out.missed += [p for i, p in enumerate(persons) if i not in taken]
    return out


def keypoint_errors(gt: Mapping[str, Any], results: Sequence[Mapping[str, Any]], cat_ids: Sequence[int],
                    sigmas: Sequence[float], match_oks: float = 0.1) -> KeypointErrors:
    """Ronchi & Perona's categories for COCO keypoint `results` against the ground truth dict `gt`."""
    sig = np.asarray(sigmas, dtype=float)
    found = match_detections(gt, results, cat_ids, sigmas, match_oks)
    out = KeypointErrors(matched=len(found.matches), background=len(found.background), missed=len(found.missed),
                         people=found.people)
    for m in found.matches:
        for category in classify_keypoints(_person(m.result), m.own, m.others, sig):
            out.keypoints[category] += 1
    return out
