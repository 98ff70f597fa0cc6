"""`ticketlab report`: run directories → CSV tables, PNG figures and one index.html beside them.

What a lottery-ticket study shows first: the headline metric against sparsity over seeds, with the
matching verdict (≥ dense mean − 1 std); then, at one level, what the masks look like — the share
of each layer kept (001 Fig. 2c), how much the masks of different runs overlap, and the kernels
pruned away entirely (002 §5, Fig. 6–7). Mask figures use `--level N`, by default the sparsest level
at which every series still matches. Each figure's caption says which runs, seeds, level and
metric it compares, and links the CSV it was drawn from.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional, Sequence

from ticketlab.analysis import tables
from ticketlab.analysis.detection_sections import detection_sections
from ticketlab.analysis.control_sections import control_sections
from ticketlab.analysis.convergence import convergence_section
from ticketlab.analysis.curve_sections import curve_blocks
from ticketlab.analysis.early_bird import early_bird_sections
from ticketlab.analysis.instability import instability_sections
from ticketlab.analysis.latency_sections import LatencyTimer, latency_section
from ticketlab.analysis.matrix_sections import MatrixDir, matrix_sections, split_matrices
from ticketlab.analysis.methods import method_sections
from ticketlab.analysis.early_stop import early_stop_section
from ticketlab.analysis.mask_curve_sections import fig6_sections, fig7_sections
from ticketlab.analysis.mask_sections import AtLevel, kept_section, kernel_sections, series_text, similarity_sections
from ticketlab.analysis.page import Block, render_page
from ticketlab.analysis.study import expand_studies, paper_headings, study_sections
from ticketlab.analysis.transfer_table import is_transfer_table, transfer_table_block
from ticketlab.analysis.runs import (
    LevelStats,
    Run,
    Series,
    aggregate,
    check_metric,
    common_levels,
    default_level,
    group_series,
    load_runs,
    matches_in_every_series,
)
from ticketlab.analysis.trunk import trunk_mask
from ticketlab.atomic import atomic_write_text
from ticketlab.errors import TicketlabError


@dataclass(frozen=True)
class ReportResult:
    index: Path
    files: list[Path]          # every file written, index.html last
    level: int                 # the level of the mask figures
    level_reason: str


def _summary_block(series: Sequence[Series], stats: Sequence[Sequence[LevelStats]], summary_csv: str,
                   metric: Optional[str]) -> Block:
    header = ["series", "level", "runs", "scope sparsity", "network sparsity", "metric", "mean", "std",
              "matching"]
    rows = []
    for s, st in zip(series, stats):
        judged = metric or s.headline
        for ls in st:
            scope, network = ls.values.get("sparsity_scope"), ls.values.get("sparsity_network")
            h = ls.values.get(judged) if judged else None
            rows.append([s.label, ls.level, ls.runs, scope.mean if scope else None, network.mean if network else None,
                         judged, h.mean if h else None, h.std if h else None,
                         "—" if ls.matching is None else ("yes" if ls.matching else "no")])
    return Block(heading="Summary per series", data=[summary_csv], table=(header, rows),
                 paragraphs=[f"Runs with the same config except train.seed form a series: {series_text(series)}. "
                             "Sparsities and the metric of the verdicts (--metric, default the task's headline) are "
                             "means over the series' runs; std is the sample "
                             "standard deviation (empty for one seed)."])


def _check_level(runs: Sequence[Run], level: int) -> None:
    missing = [r for r in runs if level not in r.levels]
    if missing:
        r = missing[0]
        raise TicketlabError(f"--level {level}: not finished in {r.path} (finished levels: "
                             f"{', '.join(map(str, sorted(r.levels)))})")


def _default_reason(level: int, common: Sequence[int], stats: Sequence[Sequence[LevelStats]]) -> str:
    if all(ls.matching is None for st in stats for ls in st):
        return "the last level every run finished (no matching verdict to go by)"
    if level == common[-1]:
        return ("the last level every run finished; every series still matches there"
                if matches_in_every_series(stats, level) else
                "the last level every run finished: no pruned level matches in every series")
    return "the sparsest level every run finished at which every series still matches"


def _matrix_blocks(out: Path, m: MatrixDir, written: list[Path]) -> list[Block]:
    """A transfer-matrix directory's blocks: paper 001's table form (targets with `columns`), then its
    curves, cells and universal verdict (paper 002)."""
    table = [transfer_table_block(out, m.path, written)] if is_transfer_table(m.path) else []
    return table + matrix_sections(out, m, written)


def _matrix_report(out: Path, matrices: Sequence[MatrixDir]) -> ReportResult:
    """The page of transfer-matrix directories alone."""
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    blocks = [b for m in matrices for b in _matrix_blocks(out, m, written)]
    intro = [f"{len(matrices)} transfer matrix(es): {', '.join(str(m.path) for m in matrices)}."]
    index = out / "index.html"
    atomic_write_text(index, render_page("ticketlab report", intro, blocks))
    written.append(index)
    return ReportResult(index=index, files=written, level=0, level_reason="transfer matrices only: no mask figures")


def write_report(run_dirs: Sequence[Path], out: Path, level: Optional[int] = None,
                 metric: Optional[str] = None, latency: Optional[LatencyTimer] = None) -> ReportResult:
    """Read the runs (a study directory stands for its finished cells), write the tables, figures and
    index.html into `out`; return what was written. `metric`: the metric of the matching verdicts
    (any metric the levels recorded; default each task's headline). `latency`: how to time levels, for
    the accuracy-vs-latency section of series that differ in prune.granularity (none without it). A
    transfer-matrix directory stands for its tables and curves (`transfer_table.py`, `matrix_sections.py`),
    not for its cells."""
    given, matrices = split_matrices([Path(p) for p in run_dirs])
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise TicketlabError(f"--out {out}: exists and is not a directory")
    if matrices and not given:
        return _matrix_report(out, matrices)
    paths, studies = expand_studies(given)
    runs = load_runs(paths)
    check_metric(runs, metric)
    out.mkdir(parents=True, exist_ok=True)
    series = group_series(runs)
    stats = [aggregate(s, metric) for s in series]
    if level is None:
        level = default_level(runs, stats)
        reason = _default_reason(level, common_levels(runs), stats)
    else:
        _check_level(runs, level)
        reason = "chosen with --level"

    written: list[Path] = []
    summary_csv = "summary_by_series.csv"
    written.append(tables.write_csv(out / summary_csv, tables.series_summary(series, stats, metric)))
    blocks = curve_blocks(out, series, stats, summary_csv, written, metric)
    blocks += method_sections(out, series, stats, written)
    blocks += latency_section(out, series, stats, written, latency, metric)
    blocks.append(_summary_block(series, stats, summary_csv, metric))
    at = AtLevel(out=out, runs=runs, masks=[r.mask(level) for r in runs], level=level, reason=reason)
    blocks.append(kept_section(at, series, written))
    blocks += similarity_sections(replace(at, masks=[trunk_mask(r, level) for r in runs]), written)
    blocks += kernel_sections(at, written)
    blocks += fig6_sections(out, series, written)     # paper 002 Fig. 6-8: masks across models, controls
    blocks += fig7_sections(at, series, written)
    blocks += control_sections(out, series, written)
    headings = paper_headings(studies)  # run-level sections of a named study's cells carry its figure
    blocks += detection_sections(out, runs, written, headings)  # COCO breakdowns and errors of detection runs
    blocks += early_bird_sections(out, runs, written)
    shared = {headings.get(r.path.resolve(), "") for r in runs}  # one figure over every run: headed when all agree
    prefix = next(iter(shared)) if len(shared) == 1 else ""
    blocks += [replace(b, heading=prefix + b.heading) for b in convergence_section(out, runs, level, written)]
    blocks += instability_sections(out, series, written)
    blocks += early_stop_section(out, series, written)
    for study in studies:
        blocks += study_sections(out, study, runs, written, metric)
    for m in matrices:
        blocks += _matrix_blocks(out, m, written)

    runs_table = (["run", "directory", "series", "seed", "task", "headline", "finished levels"],
                  [[r.label, str(r.path), s.label, r.seed, r.task, r.headline or "—",
                    " ".join(map(str, sorted(r.levels)))] for s in series for r in s.runs])
    intro = [f"{len(runs)} run(s) in {len(series)} series. Mask figures use level {level}: {reason}."]
    page = render_page("ticketlab report", intro, [Block(heading="Runs", table=runs_table), *blocks])
    index = out / "index.html"
    atomic_write_text(index, page)
    written.append(index)
    return ReportResult(index=index, files=written, level=level, level_reason=reason)
