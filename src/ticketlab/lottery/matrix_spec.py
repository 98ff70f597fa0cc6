"""The transfer-matrix spec (YAML) and the rows it expands to.

    paper: "002 Fig. 3: ..."               # optional: the figure or table it reproduces; heads its report
    out: runs/universality                 # optional; --out overrides
    seeds: [0, 1, 2]                       # every target's seeds, unless the target lists its own
    targets:                               # columns: a config plus overrides (+ the metric to judge)
      digits: {config: configs/digits_resnet.yaml, set: [train.duration=5ep]}
      coco: {config: ..., columns: [bbox_AP, bbox_AP50]}   # optional: metrics of the paper-form table (report)
      voc: {config: ..., seeds: [0, 1, 2, 3, 4]}           # optional: this column's own seeds
    baselines:                             # optional dense rows besides `dense`, e.g. one per θ_p
      dense SimCLR: [model.weights=runs/simclr/level_00/final.safetensors]
    sources:                               # rows
      m_P supervised: [init.source=runs/sup/level_05, init.mode=mask]        # one row, judged against dense
      m_T: ["init.source=runs/imp_{target}/level_05", init.mode=mask]        # {target} = the column name
      m_P SimCLR:                          # a whole run: one row per finished level >= 1
        run: runs/simclr
        levels: all                        # or a list, e.g. [1, 3, 5]
        set: [model.weights=runs/simclr/level_00/final.safetensors, init.mode=mask]
        baseline: dense SimCLR             # the dense row (same θ_p) its cells are judged against

A row of a run source is named `<source> L<NN>` and trains `init.source=<run>/level_NN` plus its `set`.
Paper 002 judges each transferred ticket against the dense model *from the same pre-trained weights*
θ_p (Eq. 1), hence one baseline per θ_p; `dense` (the target config as is) is always there.
A target's `seeds:` replaces the spec's for that column alone: paper 001 ran its COCO columns once and
its VOC column over 5 runs (Tables 1, 2, 4), so one column may need more runs than the others.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ticketlab.config import from_dict
from ticketlab.errors import TicketlabError
from ticketlab.lottery.launch import LaunchConfig
from ticketlab.lottery.shared import SHARED_DIR
from ticketlab.rundir import RunDir, level_name
from ticketlab.yaml_file import read_paper, read_yaml_mapping

DENSE = "dense"


@dataclass
class Target:
    config: str
    overrides: list[str] = field(default_factory=list)
    metric: Optional[str] = None  # null = the task's headline metric
    columns: list[str] = field(default_factory=list)  # metrics the report's paper-form table shows (analysis/transfer_table.py)
    seeds: Optional[list[int]] = None  # None = the spec's `seeds:`


@dataclass
class RunSource:
    """Every chosen level of one run, each a row."""
    run: str
    levels: Optional[list[int]] = None      # None = every finished level >= 1
    overrides: list[str] = field(default_factory=list)
    baseline: str = DENSE


@dataclass
class Row:
    name: str
    overrides: list[str]
    baseline: Optional[str]                 # None: the row is `dense` itself
    source: Optional[str] = None            # the run source it came from
    level: Optional[int] = None
    level_dir: Optional[Path] = None        # that source's level directory


@dataclass
class MatrixSpec:
    targets: dict[str, Target]
    sources: dict[str, list[str] | RunSource]
    seeds: list[int]
    out: Optional[str] = None
    baselines: dict[str, list[str]] = field(default_factory=dict)
    path: Optional[Path] = None  # the spec file (cells launched as processes rerun it with --cell)
    launch: LaunchConfig = field(default_factory=LaunchConfig)  # where cells run (`launch.py`)
    paper: Optional[str] = None  # the figure or table it reproduces, e.g. "002 Fig. 3: ..."

    def seeds_of(self, column: str) -> list[int]:
        """The seeds of target `column`: its own `seeds:`, else the spec's."""
        own = self.targets[column].seeds
        return self.seeds if own is None else own

    def rows(self) -> list[Row]:
        """dense, the extra baselines (judged against dense), then every source row in spec order."""
        rows = [Row(DENSE, [], None)] + [Row(n, o, DENSE) for n, o in self.baselines.items()]
        for name, src in self.sources.items():
            if isinstance(src, RunSource):
                for lv in source_levels(name, src):
                    level_dir = Path(src.run) / level_name(lv)
                    rows.append(Row(f"{name} L{lv:02d}", [f"init.source={level_dir}", *src.overrides], src.baseline,
                                    source=name, level=lv, level_dir=level_dir))
            else:
                rows.append(Row(name, src, DENSE))
        return rows


def source_levels(name: str, src: RunSource) -> list[int]:
    """The levels of a run source: the listed ones (each finished) or every finished level >= 1."""
    where = f"sources.{name}.run={src.run}"
    if not (Path(src.run) / "config.yaml").is_file():
        raise TicketlabError(f"{where}: not a ticketlab run directory (no config.yaml)")
    finished = RunDir(Path(src.run)).finished_levels()
    if src.levels is None:
        levels = [lv for lv in finished if lv >= 1]
        if not levels:
            raise TicketlabError(f"{where}: no finished pruned level (level_01 or later)")
        return levels
    missing = [lv for lv in src.levels if lv not in finished]
    if missing:
        raise TicketlabError(f"sources.{name}.levels: level(s) {', '.join(map(str, missing))} not finished in "
                             f"{src.run} (finished: {', '.join(map(str, finished)) or 'none'})")
    return sorted(set(src.levels))


def _strings(value, where: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TicketlabError(f"{where}: expected a list of key=value strings, got {value!r}")
    return value


def _run_source(path: Path, name: str, value: dict, baselines: dict) -> RunSource:
    where = f"{path}: sources.{name}"
    unknown = set(value) - {"run", "levels", "set", "baseline"}
    if unknown or not isinstance(value.get("run"), str):
        raise TicketlabError(f"{where}: expected {{run: RUN_DIR, levels: all | [1, 2, ...], set: [...], "
                             f"baseline: NAME}}" + (f"; unknown key(s) {', '.join(sorted(unknown))}" if unknown else ""))
    levels = value.get("levels", "all")
    if levels == "all":
        levels = None
    elif not isinstance(levels, list) or not levels or not all(isinstance(v, int) and v >= 1 for v in levels):
        raise TicketlabError(f"{where}.levels: expected all or a list of levels >= 1, got {levels!r}")
    baseline = value.get("baseline", DENSE)
    if baseline != DENSE and baseline not in baselines:
        raise TicketlabError(f"{where}.baseline: {baseline!r} is not {DENSE!r} nor one of baselines "
                             f"({', '.join(baselines) or 'none given'})")
    return RunSource(value["run"], levels, _strings(value.get("set"), f"{where}.set"), baseline)


def _seeds(value, where: str) -> list[int]:
    if not isinstance(value, list) or not value or not all(isinstance(s, int) and not isinstance(s, bool)
                                                           for s in value) or len(set(value)) < len(value):
        raise TicketlabError(f"{where}: expected a non-empty list of distinct integers (e.g. [0, 1, 2]), got {value!r}")
    return value


def load_spec(path: Path) -> MatrixSpec:
    data = read_yaml_mapping(path, "transfer-matrix spec",
                             "a mapping with keys targets, sources, baselines, seeds, out, launch, paper")
    keys = {"targets", "sources", "baselines", "seeds", "out", "launch", "paper"}
    unknown = set(data) - keys
    if unknown:
        raise TicketlabError(f"{path}: unknown key(s) {', '.join(sorted(unknown))} (expected "
                             f"{', '.join(sorted(keys))})")
    targets = {}
    for name, t in (data.get("targets") or {}).items():
        if (not isinstance(t, dict) or not isinstance(t.get("config"), str)
                or set(t) - {"config", "set", "metric", "columns", "seeds"}):
            raise TicketlabError(f"{path}: targets.{name}: expected {{config: FILE, set: [...], metric: NAME, "
                                 f"columns: [METRIC, ...], seeds: [SEED, ...]}}")
        columns = t.get("columns") or []
        if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
            raise TicketlabError(f"{path}: targets.{name}.columns: expected a list of metric names "
                                 f"(e.g. [bbox_AP, bbox_AP50]), got {columns!r}")
        seeds = _seeds(t["seeds"], f"{path}: targets.{name}.seeds") if "seeds" in t else None
        targets[str(name)] = Target(t["config"], _strings(t.get("set"), f"{path}: targets.{name}.set"), t.get("metric"),
                                    columns, seeds)
    baselines = {str(k): _strings(v, f"{path}: baselines.{k}") for k, v in (data.get("baselines") or {}).items()}
    sources: dict[str, list[str] | RunSource] = {}
    for k, v in (data.get("sources") or {}).items():
        sources[str(k)] = (_run_source(path, str(k), v, baselines) if isinstance(v, dict)
                           else _strings(v, f"{path}: sources.{k}"))
    if not targets or not sources:
        raise TicketlabError(f"{path}: needs at least one entry under targets and one under sources")
    for section, names in (("sources", sources), ("baselines", baselines)):
        if DENSE in names:
            raise TicketlabError(f"{path}: {section}.{DENSE} is the baseline row, run always; pick another name")
    if SHARED_DIR in {*sources, *baselines}:
        raise TicketlabError(f"{path}: {SHARED_DIR}: the directory of the shared dense levels; pick another name")
    clash = [n for n in sources if n in baselines]
    if clash:
        raise TicketlabError(f"{path}: sources.{clash[0]}: also the name of a baseline; pick another")
    seeds = _seeds(data.get("seeds", [0]), f"{path}: seeds")
    launch = from_dict(LaunchConfig, data.get("launch") or {}, "launch.")
    return MatrixSpec(targets, sources, seeds, data.get("out"), baselines, Path(path), launch,
                      read_paper(data, path, "matrix"))
