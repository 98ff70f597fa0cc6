"""`ticketlab sweep`: a grid of digits runs as one study directory — each cell an ordinary run dir,
aggregate.csv equal to mean/stdev computed here from the cells' metrics.json, reruns skip finished
cells — and its report sections; the module-group preset is paper 001 Table 3's 16 combinations."""

from __future__ import annotations

import csv
import itertools
import json
import statistics
from pathlib import Path

import pytest
import yaml

from ticketlab.analysis.report import write_report
from ticketlab.cli import main
from ticketlab.errors import TicketlabError
from ticketlab.lottery.study import load_study, run_study

ROOT = Path(__file__).resolve().parents[1]
SET = ["train.duration=2ep", "train.eval_every=1ep", "prune.levels=1", "prune.rate=0.5"]


def write_study(path: Path, **spec) -> Path:
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    spec = write_study(root / "s.yaml", config=str(ROOT / "configs/digits_lenet.yaml"), set=SET,
                       grid={"train.seed": [0, 1], "prune.strategy": ["global", "layerwise"]})
    out = root / "out"
    assert main(["sweep", str(spec), "--out", str(out)]) == 0
    return spec, out


def cell_metrics(out: Path) -> dict[tuple[int, str], list[dict]]:
    found = {}
    for cell in json.loads((out / "study.json").read_text())["cells"]:
        for level in (0, 1):
            m = json.loads((out / "cells" / cell["name"] / f"level_{level:02d}" / "metrics.json").read_text())
            found.setdefault((level, cell["values"]["prune.strategy"]), []).append(m)
    return found


def test_each_cell_is_a_run_dir_named_from_its_overrides(study):
    _, out = study
    names = sorted(p.name for p in (out / "cells").iterdir())
    assert names == sorted(f"seed={s}__strategy={g}" for s in (0, 1) for g in ("global", "layerwise"))
    for name in names:
        cfg = yaml.safe_load((out / "cells" / name / "config.yaml").read_text())
        assert f"seed={cfg['train']['seed']}" in name and f"strategy={cfg['prune']['strategy']}" in name
        assert cfg["train"]["duration"] == "2ep" and cfg["prune"]["rate"] == 0.5
    assert all(c["finished"] for c in json.loads((out / "study.json").read_text())["cells"])


def test_aggregate_is_mean_and_std_over_seeds_with_the_verdict(study):
    _, out = study
    rows = list(csv.DictReader(open(out / "aggregate.csv")))
    found = cell_metrics(out)
    assert len(rows) == 4
    for row in rows:
        strategy = "layerwise" if "layerwise" in row["series"] else "global"
        acc = [m["accuracy"] for m in found[(int(row["level"]), strategy)]]
        assert float(row["accuracy_mean"]) == pytest.approx(statistics.mean(acc))
        assert float(row["accuracy_std"]) == pytest.approx(statistics.stdev(acc))
        if row["level"] == "1":
            dense = [m["accuracy"] for m in found[(0, strategy)]]
            ok = statistics.mean(acc) >= statistics.mean(dense) - statistics.stdev(dense)
            assert row["matching"] == ("yes" if ok else "no")


def test_rerun_skips_finished_cells_and_a_changed_spec_is_refused(study, capsys):
    spec, out = study
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("cells/*/level_*/metrics.json")}
    lines = []
    run_study(spec, out, log=lines.append)
    assert len(lines) == 4 and all(line.endswith("finished, skipped") for line in lines)
    assert stamps == {p: p.stat().st_mtime_ns for p in out.glob("cells/*/level_*/metrics.json")}
    changed = write_study(spec.parent / "changed.yaml", config=str(ROOT / "configs/digits_lenet.yaml"),
                          set=SET, grid={"train.seed": [0, 1, 2]})
    with pytest.raises(TicketlabError, match="different spec"):
        run_study(changed, out, log=lambda s: None)


def test_report_of_a_study_has_the_cells_table_and_the_sweep_curve(study, tmp_path):
    _, out = study
    result = write_report([out], tmp_path / "r")
    names = {p.name for p in result.files}
    assert {"out_cells.csv", "out_aggregate.csv", "out_sweep_prune_strategy.png"} <= names
    rows = list(csv.DictReader(open(tmp_path / "r" / "out_cells.csv")))
    assert [r["prune.strategy"] for r in rows] == ["global", "layerwise"]
    found = cell_metrics(out)
    for r in rows:
        ticket = [m["accuracy"] for m in found[(1, r["prune.strategy"])]]
        assert r["seeds"] == "0 1" and r["level"] == "1"
        assert r["accuracy mean (std)"].startswith(f"{statistics.mean(ticket):.4f}")
        m = found[(1, r["prune.strategy"])][0]  # scope: every weight matrix; the rest: the biases
        assert float(r["Param %"]) == pytest.approx(100 * m["scope_size"] / (m["scope_size"] + 300 + 100 + 10))


def test_module_group_preset_is_every_subset_of_the_four_groups(tmp_path):
    spec = write_study(tmp_path / "t3.yaml", config=str(ROOT / "configs/synth_fasterrcnn_lite.yaml"),
                       preset="module_groups", grid={"train.seed": [0, 1]})
    study = load_study(spec)
    cells = study.cells()
    assert len(cells) == 32
    groups = ["base", "top", "rpn", "box_head+box_predictor"]
    expected = {frozenset(c) for k in range(5) for c in itertools.combinations(groups, k)}
    seen = set()
    for cell in cells:
        sets = dict(o.split("=", 1) for o in cell.overrides)
        scope = yaml.safe_load(sets["prune.scope"]) or []
        seen.add(frozenset("box_head+box_predictor" if g.startswith("box_") else g for g in scope))
        assert ("box_head" in scope) == ("box_predictor" in scope)
        assert (yaml.safe_load(sets.get("prune.levels", "1")) == 0) == (scope == [])
    assert seen == expected
    bad = write_study(tmp_path / "bad.yaml", config=str(ROOT / "configs/synth_fasterrcnn_lite.yaml"),
                      preset="table3")
    with pytest.raises(TicketlabError, match="preset"):
        load_study(bad)


def test_a_study_names_the_paper_figure_it_reproduces_and_renaming_it_keeps_the_cells(study, tmp_path):
    spec, out = study
    named = write_study(spec.parent / "named.yaml", **{**yaml.safe_load(spec.read_text()),
                                                        "paper": "001 Fig. 2c: global vs layer-wise"})
    lines = []
    run_study(named, out, log=lines.append)  # only the caption changed: the cells are the same
    assert len(lines) == 4 and all(line.endswith("finished, skipped") for line in lines)
    assert json.loads((out / "study.json").read_text())["spec"]["paper"] == "001 Fig. 2c: global vs layer-wise"
    page = write_report([out], tmp_path / "r").index.read_text()
    assert "Paper 001 Fig. 2c: global vs layer-wise — study out" in page
    assert "Paper 001 Fig. 2c: global vs layer-wise — accuracy vs prune.strategy" in page
    bad = write_study(spec.parent / "bad.yaml", **{**yaml.safe_load(spec.read_text()), "paper": ["Fig. 2c"]})
    with pytest.raises(TicketlabError, match="bad.yaml: paper: expected the figure or table"):
        load_study(bad)


def test_each_line_of_a_sweep_is_judged_against_its_own_dense_model(tmp_path):
    """Two models in one study (as paper 001 Fig. 3's ResNet-18 vs ResNet-50): each model's line in the
    sweep figure carries the dense mean of that model's cells only, not of every cell pooled."""
    spec = write_study(tmp_path / "two.yaml", config=str(ROOT / "configs/digits_lenet.yaml"),
                       set=["train.duration=1ep", "train.eval_every=1ep", "prune.levels=1"],
                       grid={"model": [{"model.width": 1.0}, {"model.width": 0.02}],
                             "prune.rate": [0.5, 0.8], "train.seed": [0, 1]})
    out = tmp_path / "out"
    assert main(["sweep", str(spec), "--out", str(out)]) == 0
    cells = json.loads((out / "study.json").read_text())["cells"]
    dense: dict[str, dict[int, float]] = {}
    for cell in cells:
        m = json.loads((out / "cells" / cell["name"] / "level_00" / "metrics.json").read_text())
        seed = yaml.safe_load((out / "cells" / cell["name"] / "config.yaml").read_text())["train"]["seed"]
        dense.setdefault(cell["values"]["model"], {})[seed] = m["accuracy"]
    own = {model: (statistics.mean(v.values()), statistics.stdev(v.values())) for model, v in dense.items()}
    assert len(own) == 2 and abs(own["width=1.0"][0] - own["width=0.02"][0]) > 0.05

    write_report([out], tmp_path / "r")
    by_rate = list(csv.DictReader(open(tmp_path / "r" / "out_sweep_prune_rate.csv")))
    by_model = list(csv.DictReader(open(tmp_path / "r" / "out_sweep_model.csv")))
    assert len(by_rate) == 4 and len(by_model) == 4
    for row in by_rate:  # a line per model ("width=1.0"): its dense reference all along the prune.rate axis
        assert (float(row["dense mean"]), float(row["dense std"])) == pytest.approx(own[row["line"]])
    for row in by_model:  # a line per rate: at each model, that model's dense
        assert (float(row["dense mean"]), float(row["dense std"])) == pytest.approx(own[row["model"]])
