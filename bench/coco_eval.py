"""Benchmark: COCO bbox evaluation time, ticketlab's faster-coco-eval path vs pycocotools' COCOeval.

Data: a synthetic COCO set (seeded numpy): --images images of 640x480, each with 1-20 ground-truth
boxes over 10 categories and all three COCO size ranges (a few marked iscrowd), and detections the
way a half-trained detector makes them: most GT boxes found with position/size jitter and a score
that falls with the jitter, some duplicates, some missed, plus background false positives; at most
100 per image.

Both sides do the whole job from the in-memory GT dict and result list: build the index, load the
results, evaluate, accumulate, summarize. ticketlab = `ticketlab.tasks.coco_eval.evaluate_coco`
(faster-coco-eval's COCOeval_faster, as `ticketlab find/eval` runs it); reference = pycocotools
COCO + COCOeval (stdout silenced). The script asserts that all 12 summary numbers agree to 1e-6.
Repeats alternate which side goes first; the figure is the median over repeats of
(pycocotools time / ticketlab time in the same repeat).

    .venv/bin/python bench/coco_eval.py [--images 2000] [--repeats 3] [--seed 0]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import statistics
import time

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from machine import describe
from ticketlab.tasks.coco_eval import DET_STATS, evaluate_coco

WIDTH, HEIGHT, CATEGORIES = 640, 480, 10


def _box(rng: np.random.Generator) -> list[float]:
    side = float(np.exp(rng.uniform(np.log(8), np.log(300))))  # small, medium and large objects
    w, h = side * rng.uniform(0.6, 1.4), side * rng.uniform(0.6, 1.4)
    x, y = rng.uniform(0, WIDTH - min(w, WIDTH - 1)), rng.uniform(0, HEIGHT - min(h, HEIGHT - 1))
    return [x, y, min(w, WIDTH - x), min(h, HEIGHT - y)]


def synthetic_set(n_images: int, seed: int = 0) -> tuple[dict, list[dict]]:
    """(COCO ground-truth dict, COCO result list) as described in the module docstring."""
    rng = np.random.default_rng(seed)
    images, anns, results = [], [], []
    for image_id in range(1, n_images + 1):
        images.append({"id": image_id, "width": WIDTH, "height": HEIGHT, "file_name": f"{image_id}.png"})
        dets = []
        for _ in range(int(rng.integers(1, 21))):
            x, y, w, h = _box(rng)
            cat = int(rng.integers(1, CATEGORIES + 1))
            anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": cat, "bbox": [x, y, w, h],
                         "area": w * h, "iscrowd": int(rng.random() < 0.02)})
            for _ in range(int(rng.choice([0, 1, 1, 1, 2], p=[0.15, 0.3, 0.25, 0.15, 0.15]))):
                jitter = rng.normal(0, 0.12, 4) * [w, h, w, h]
                dets.append({"image_id": image_id, "category_id": cat if rng.random() > 0.05 else
                             int(rng.integers(1, CATEGORIES + 1)),
                             "bbox": [x + jitter[0], y + jitter[1], max(1.0, w + jitter[2]), max(1.0, h + jitter[3])],
                             "score": float(np.clip(0.9 - 2 * np.abs(jitter / max(w, h)).mean() + rng.normal(0, 0.1), 0.01, 1))})
        for _ in range(int(rng.integers(0, 15))):
            dets.append({"image_id": image_id, "category_id": int(rng.integers(1, CATEGORIES + 1)),
                         "bbox": _box(rng), "score": float(rng.uniform(0.01, 0.6))})
        dets.sort(key=lambda d: -d["score"])
        results.extend(dets[:100])
    cats = [{"id": c, "name": f"class_{c}"} for c in range(1, CATEGORIES + 1)]
    return {"images": images, "annotations": anns, "categories": cats}, results


def pycocotools_stats(gt: dict, results: list[dict]) -> np.ndarray:
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(gt)
        coco_gt.createIndex()
        ev = COCOeval(coco_gt, coco_gt.loadRes(copy.deepcopy(results)), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return np.asarray(ev.stats)


def ticketlab_stats(gt: dict, results: list[dict]) -> np.ndarray:
    stats = evaluate_coco(gt, results, "bbox").stats
    return np.array([stats[f"bbox_{n}"] for n in DET_STATS])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    gt, results = synthetic_set(args.images, args.seed)
    sides = {"ticketlab": ticketlab_stats, "pycocotools": pycocotools_stats}
    times: dict[str, list[float]] = {k: [] for k in sides}
    stats: dict[str, np.ndarray] = {}
    for r in range(args.repeats):
        for k in (list(sides) if r % 2 == 0 else list(sides)[::-1]):
            t0 = time.perf_counter()
            stats[k] = sides[k](gt, results)
            times[k].append(time.perf_counter() - t0)
            print(f"  repeat {r} {k:11s}: {times[k][-1]:.2f} s", flush=True)
        diff = np.abs(stats["ticketlab"] - stats["pycocotools"]).max()
        assert diff <= 1e-6, f"AP differs by {diff:.2e}: {stats['ticketlab']} vs {stats['pycocotools']}"
    print(describe())
    print(f"workload: bbox, {args.images} images, {len(gt['annotations'])} GT boxes, {len(results)} detections, "
          f"{CATEGORIES} categories; AP {stats['ticketlab'][0]:.4f}, AP50 {stats['ticketlab'][1]:.4f}; all 12 "
          f"stats equal to 1e-6 (max diff {diff:.1e}); medians of {args.repeats} alternating repeats")
    for k in sides:
        print(f"{k:11s}: {statistics.median(times[k]):.2f} s")
    ratio = statistics.median(p / t for p, t in zip(times["pycocotools"], times["ticketlab"]))
    print(f"ratio: pycocotools / ticketlab (faster-coco-eval) time = {ratio:.1f}x faster")


if __name__ == "__main__":
    main()
