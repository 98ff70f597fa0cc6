"""The report's COCO sections for detection runs: where a ticket loses AP, and which errors it makes.

Paper 001 (§4.4, App. C) looks past the headline AP of its tickets: the % change vs the dense model
per object size (Fig. 4), per category from rare to frequent and for the easiest and hardest
categories (Fig. 5), and the errors of dense and pruned models side by side — TIDE for boxes and
masks (Fig. 7–8), Ronchi & Perona's keypoint errors and the AP after fixing each (Fig. 9). Each section compares the dense model
(level 0) with every ticket level of one run, on the run's own val set, from the detections the
final evaluation of each level left in `level_NN/detections.json`; each writes a CSV and a PNG into
the report directory and returns the page block showing them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping, Optional, Sequence

from ticketlab.analysis import tables
from ticketlab.analysis.coco_breakdown import (
    ApBreakdown,
    ap_breakdown,
    category_frequency,
    easy_and_hard,
    percent_change,
)
from ticketlab.analysis.detection_figures import (
    plot_change_lines,
    plot_grouped_bars,
    plot_pr_panels,
    plot_stacked_shares,
)
from ticketlab.analysis.keypoint_errors import KEYPOINT_ERRORS, keypoint_errors
from ticketlab.analysis.keypoint_pr import keypoint_fix_curves
from ticketlab.analysis.page import Block
from ticketlab.analysis.runs import Run
from ticketlab.analysis.tide_errors import TIDE_ERRORS, TIDE_MODES, tide_errors
from ticketlab.errors import TicketlabError
from ticketlab.registry import TASKS
from ticketlab.rundir import DETECTIONS_FILE, RunDir, level_name
from ticketlab.tasks import build_task_data, task_class
from ticketlab.tasks.coco_eval import keypoint_sigmas

AREAS = ("small", "medium", "large")


@dataclass(frozen=True)
class DetectionRun:
    """One detection run's val ground truth and each level's saved val detections."""
    run: Run
    gt: dict
    cat_ids: list[int]
    names: dict[int, str]
    train_counts: dict[int, int]
    detections: dict[int, list[dict[str, Any]]]   # level -> COCO results

    @property
    def iou_types(self) -> tuple[str, ...]:
        return task_class(self.run.task).iou_types

    @property
    def levels(self) -> list[int]:
        return sorted(self.detections)

    def sparsity(self, level: int) -> float:
        return float(tables.level_sparsity(self.run, level) or 0.0)

    def level_label(self, level: int) -> str:
        return "level 0 (dense)" if level == 0 else f"level {level} ({100.0 * self.sparsity(level):.1f}%)"

    @property
    def compared(self) -> str:
        tickets = ", ".join(self.level_label(lv) for lv in self.levels if lv > 0)
        return (f"run {self.run.label} (seed {self.run.seed}, task {self.run.task}): dense = level 0 vs "
                f"{tickets}; {len(self.gt['images'])} val images, detections from level_NN/{DETECTIONS_FILE}")


def read_detections(path: Path) -> list[dict[str, Any]]:
    """A COCO results file: a JSON list of records with image_id, category_id and score."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise TicketlabError(f"{path}: unreadable detections file ({e.__class__.__name__})") from None
    if not isinstance(data, list) or not all(
            isinstance(r, dict) and {"image_id", "category_id", "score"} <= set(r) for r in data):
        raise TicketlabError(f"{path}: expected a COCO results list of records with image_id, category_id, score")
    return data


def load_detection_run(run: Run) -> DetectionRun:
    cfg = RunDir(run.path).data_config()
    try:
        data = build_task_data(cfg)
    except TicketlabError as e:
        raise TicketlabError(f"{run.path / 'config.yaml'}: {e}") from None
    meta = data.val.meta
    cat_ids = list(meta.cat_ids)
    detections = {}
    for level in sorted(run.levels):
        path = run.path / level_name(level) / DETECTIONS_FILE
        if path.is_file():
            detections[level] = read_detections(path)
    return DetectionRun(run=run, gt=data.val.coco_gt, cat_ids=cat_ids, names=dict(zip(cat_ids, meta.class_names)),
                        train_counts=category_frequency(data.train.coco_gt, cat_ids), detections=detections)


def _tag(run: Run) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in run.label)


def _write(out: Path, written: list[Path], name: str, header: list[str], rows: list[list[object]]) -> str:
    written.append(tables.write_csv(out / name, (header, rows)))
    return name


def _missing_note(d: DetectionRun) -> str:
    missing = [lv for lv in sorted(d.run.levels) if lv not in d.detections]
    if not missing:
        return ""
    lv = level_name(missing[0])
    return (f" Levels without {DETECTIONS_FILE} (left out): {', '.join(map(str, missing))}; write one with "
            f"`ticketlab eval {d.run.path / lv} --save-detections {d.run.path / lv / DETECTIONS_FILE}`.")


def size_section(d: DetectionRun, ap: dict[tuple[int, str], ApBreakdown], out: Path, written: list[Path]) -> Block:
    rows, panels = [], {}
    for iou in d.iou_types:
        areas = [a for a in AREAS if a in ap[(0, iou)].by_area]
        lines = {}
        for area in areas:
            dense = ap[(0, iou)].by_area[area]
            changes = []
            for lv in d.levels:
                value = ap[(lv, iou)].by_area[area]
                changes.append(percent_change(value, dense))
                rows.append([d.run.label, lv, d.sparsity(lv), iou, area, value, dense, changes[-1]])
            lines[area] = changes
        panels[iou] = ([d.sparsity(lv) for lv in d.levels], lines, {})
    tag = _tag(d.run)
    data = _write(out, written, f"ap_by_size_{tag}.csv",
                  ["run", "level", "sparsity_scope", "iou_type", "area", "AP", "dense_AP", "change_pct"], rows)
    image = f"ap_by_size_{tag}.png"
    written.append(plot_change_lines(panels, out / image, title=f"AP change vs dense by object size, {d.run.label}"))
    return Block(heading=f"AP by object size: {d.run.label}", image=image, data=[data],
                 caption=f"% change of AP@[.5:.95] vs the dense model for small (< 32²), medium and large "
                         f"(> 96²) objects (paper 001 Fig. 4; keypoints have no small range), per iou type; "
                         f"COCO's APs/APm/APl of each level's detections. Compared: {d.compared}. Empty where "
                         f"the dense AP is 0 or a size has no ground truth.{_missing_note(d)}")


def category_sections(d: DetectionRun, ap: dict[tuple[int, str], ApBreakdown], out: Path,
                      written: list[Path]) -> list[Block]:
    """Per category (frequent → rare) and easy vs hard: one CSV behind both figures."""
    order = sorted(d.cat_ids, key=lambda c: (-d.train_counts[c], c))
    tickets = [lv for lv in d.levels if lv > 0]
    rows, bars, lines = [], {}, {}
    for iou in d.iou_types:
        dense = ap[(0, iou)].by_category
        easy, hard = easy_and_hard(dense)
        rank = {c: i + 1 for i, c in enumerate(sorted((c for c in order if dense[c] > 0), key=lambda c: -dense[c]))}
        for c in order:
            group = "easy" if c in easy else ("hard" if c in hard else "")
            for lv in d.levels:
                value = ap[(lv, iou)].by_category[c]
                rows.append([d.run.label, lv, d.sparsity(lv), iou, c, d.names[c], d.train_counts[c], value,
                             dense[c], percent_change(value, dense[c]), rank.get(c), group])
        groups = [f"{d.names[c]} ({d.train_counts[c]})" for c in order]
        bars[iou] = (groups, {d.level_label(lv): [percent_change(ap[(lv, iou)].by_category[c], dense[c])
                                                  for c in order] for lv in tickets})
        picked = {f"{g}: {d.names[c]}": [percent_change(ap[(lv, iou)].by_category[c], dense[c]) for lv in d.levels]
                  for g, cats in (("easy", easy), ("hard", hard)) for c in cats}
        styles = {label: ("-" if label.startswith("easy") else "--") for label in picked}
        lines[iou] = ([d.sparsity(lv) for lv in d.levels], picked, styles)
    tag = _tag(d.run)
    data = _write(out, written, f"ap_by_category_{tag}.csv",
                  ["run", "level", "sparsity_scope", "iou_type", "category_id", "category", "train_annotations",
                   "AP", "dense_AP", "change_pct", "dense_rank", "group"], rows)
    per_cat, easy_hard = f"ap_by_category_{tag}.png", f"ap_easy_hard_{tag}.png"
    written.append(plot_grouped_bars(bars, out / per_cat, ylabel="AP change vs dense (%)",
                                     title=f"AP change vs dense per category, frequent → rare, {d.run.label}"))
    written.append(plot_change_lines(lines, out / easy_hard, title=f"easy vs hard categories, {d.run.label}"))
    return [
        Block(heading=f"AP per category, frequent to rare: {d.run.label}", image=per_cat, data=[data],
              caption=f"% change of each category's AP@[.5:.95] vs the dense model, categories sorted by their "
                      f"number of training annotations (in brackets), most frequent first (paper 001 Fig. 5a). "
                      f"Compared: {d.compared}. Missing bars: dense AP 0 or no ground truth.{_missing_note(d)}"),
        Block(heading=f"Easy vs hard categories: {d.run.label}", image=easy_hard, data=[data],
              caption=f"% change of AP vs the dense model for the (up to) 3 categories with the highest dense AP "
                      f"(easy, solid) and the 3 with the lowest non-zero dense AP (hard, dashed), ranked per iou "
                      f"type by the dense model (paper 001 Fig. 5b–c; CSV columns dense_rank, group). "
                      f"Compared: {d.compared}."),
    ]


def tide_section(d: DetectionRun, out: Path, written: list[Path]) -> Optional[Block]:
    ious = [iou for iou in d.iou_types if iou in TIDE_MODES]
    if not ious:
        return None
    rows, panels = [], {}
    for iou in ious:
        found = tide_errors(d.gt, {d.level_label(lv): d.detections[lv] for lv in d.levels}, iou, d.cat_ids)
        for lv in d.levels:
            e = found[d.level_label(lv)]
            rows.append([d.run.label, lv, d.sparsity(lv), iou, e["AP50"], *(e[k] for k in TIDE_ERRORS)])
        panels[iou] = (list(TIDE_ERRORS), {label: [e[k] for k in TIDE_ERRORS] for label, e in found.items()})
    tag = _tag(d.run)
    data = _write(out, written, f"tide_errors_{tag}.csv",
                  ["run", "level", "sparsity_scope", "iou_type", "AP50", *(f"dAP_{k}" for k in TIDE_ERRORS)], rows)
    image = f"tide_errors_{tag}.png"
    written.append(plot_grouped_bars(panels, out / image, ylabel="dAP@0.5 if fixed (AP points)",
                                     title=f"TIDE errors, dense vs tickets, {d.run.label}"))
    return Block(heading=f"Detection and segmentation errors (TIDE): {d.run.label}", image=image, data=[data],
                 caption=f"TIDE's main errors (paper 001 App. C, Fig. 7–8): how many points AP@0.5 would gain if "
                         f"all errors of one kind were fixed — Cls (wrong class), Loc (poor box/mask), Both, Dupe "
                         f"(duplicate), Bkg (background), Miss (object never detected); one bar per level, dense "
                         f"first. Compared: {d.compared}.{_missing_note(d)}")


def keypoint_section(d: DetectionRun, out: Path, written: list[Path]) -> Optional[Block]:
    if "keypoints" not in d.iou_types:
        return None
    sigmas = keypoint_sigmas(d.gt, d.cat_ids)
    rows, shares, notes = [], {e: [] for e in KEYPOINT_ERRORS}, []
    for lv in d.levels:
        found = keypoint_errors(d.gt, d.detections[lv], d.cat_ids, sigmas)
        for e, share in found.shares().items():
            shares[e].append(share)
        notes.append(f"bkg FP {found.background}, missed {found.missed}/{found.people}")
        rows.append([d.run.label, lv, d.sparsity(lv), *(found.keypoints[e] for e in KEYPOINT_ERRORS),
                     found.matched, found.background, found.missed, found.people])
    tag = _tag(d.run)
    data = _write(out, written, f"keypoint_errors_{tag}.csv",
                  ["run", "level", "sparsity_scope", *KEYPOINT_ERRORS, "matched_detections", "background_fp",
                   "missed_people", "people"], rows)
    image = f"keypoint_errors_{tag}.png"
    written.append(plot_stacked_shares([d.level_label(lv) for lv in d.levels], shares, notes, out / image,
                                       title=f"keypoint errors, dense vs tickets, {d.run.label}"))
    return Block(heading=f"Keypoint errors: {d.run.label}", image=image, data=[data],
                 caption=f"Keypoints of matched detections by Ronchi & Perona's categories (paper 001 App. C.2, "
                         f"Fig. 9): Good (ks ≥ 0.85), Jitter (0.5 ≤ ks < 0.85), Inversion (near another keypoint "
                         f"of the same person), Swap (near the same keypoint of another person), Miss (none of these); "
                         f"under each bar the background false positives (detections matched to nobody at OKS ≥ "
                         f"0.1) and missed people. Compared: {d.compared}.{_missing_note(d)}")


def keypoint_fix_section(d: DetectionRun, out: Path, written: list[Path]) -> Optional[Block]:
    if "keypoints" not in d.iou_types:
        return None
    sigmas = keypoint_sigmas(d.gt, d.cat_ids)
    rows, panels = [], {}
    for lv in d.levels:
        curves = keypoint_fix_curves(d.gt, d.detections[lv], d.cat_ids, sigmas)
        panels[d.level_label(lv)] = [(c.row, c.recall, c.precision, c.ap50) for c in curves]
        rows += [[d.run.label, lv, d.sparsity(lv), c.row, c.ap, c.ap50] for c in curves]
    tag = _tag(d.run)
    data = _write(out, written, f"keypoint_fixes_{tag}.csv",
                  ["run", "level", "sparsity_scope", "fixed", "keypoints_AP", "keypoints_AP50"], rows)
    image = f"keypoint_fixes_{tag}.png"
    written.append(plot_pr_panels(panels, out / image, title=f"keypoint PR at OKS 0.5 after each fix, {d.run.label}"))
    return Block(heading=f"Keypoint AP after fixing each error: {d.run.label}", image=image, data=[data],
                 caption=f"Ronchi & Perona's analysis (paper 001 App. C.2, Fig. 9): precision–recall at OKS 0.5, "
                         f"AP@0.5 in brackets, of the detections as they are (Original), with all keypoints of "
                         f"one error type moved onto their ground truth (Miss, Swap, Inversion, Jitter, each alone), "
                         f"with all four fixed, then also without background false positives, then also with "
                         f"the missed people ignored (no false negatives); one panel per level, dense first. "
                         f"The CSV adds AP@[.5:.95]. Compared: {d.compared}.{_missing_note(d)}")


def run_sections(out: Path, run: Run, written: list[Path]) -> list[Block]:
    """The COCO breakdown and error sections of one run (none for a task COCO does not score)."""
    known = TASKS.find(run.task)
    if known is None or not known.iou_types:
        return []  # not a COCO task (or one this process does not know)
    d = load_detection_run(run)
    if 0 not in d.detections or len(d.levels) < 2:
        return [Block(heading=f"COCO breakdowns: {run.label}",
                      note="Needs the detections of level 0 and of at least one ticket level." + _missing_note(d))]
    ap = {(lv, iou): ap_breakdown(d.gt, d.detections[lv], iou, d.cat_ids) for lv in d.levels for iou in d.iou_types}
    return [size_section(d, ap, out, written), *category_sections(d, ap, out, written),
            *(b for b in (tide_section(d, out, written), keypoint_section(d, out, written),
                          keypoint_fix_section(d, out, written)) if b is not None)]


def detection_sections(out: Path, runs: Sequence[Run], written: list[Path],
                       headings: Mapping[Path, str] = MappingProxyType({})) -> list[Block]:
    """The COCO breakdown and error sections of every detection run given to the report; a run's
    blocks are headed with `headings[its resolved path]` first (a study's "Paper 001 Figs. 4-5 — ")."""
    return [replace(b, heading=headings.get(run.path.resolve(), "") + b.heading)
            for run in runs for b in run_sections(out, run, written)]
