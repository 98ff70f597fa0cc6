"""The ready studies of paper 002 (studies/paper002/*.yaml): each loads with every cell's config built and
names its figure; a shrunken Fig. 2 sweep, Fig. 3 transfer matrix and Fig. 4 one (RGB masks onto the
1-channel digits model) run through the CLI, and the report shows them under their "Paper 002 …"
headings with the values the cells' metrics hold."""

from __future__ import annotations

import csv
import html
import json
import os
import statistics
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from ticketlab.cli import main as ticketlab
from ticketlab.config import load_config
from ticketlab.errors import TicketlabError
from ticketlab.lottery.info import model_for_info
from ticketlab.lottery.matrix_spec import RunSource, load_spec
from ticketlab.lottery.study import load_study
from ticketlab.sparsity import load_mask

REPO = Path(__file__).resolve().parents[1]
STUDIES = REPO / "studies" / "paper002"
MATRICES = sorted(p.stem for p in STUDIES.glob("*.yaml") if "targets" in yaml.safe_load(p.read_text()))
SWEEPS = sorted(p.stem for p in STUDIES.glob("*.yaml") if p.stem not in MATRICES)
TINY = ["train.duration=2it", "train.eval_every=2it", "train.checkpoint_every=2it", "train.warmup=0it",
        "train.batch_size=8", "train.milestones=[]"]


def test_every_figure_has_a_study():
    names = " ".join(MATRICES + SWEEPS)
    for fig in ("fig2_", "fig3_", "fig4_", "fig5_detection", "fig5_segmentation", "fig9_", "fig11_", "fig12_",
                "table1_", "table2_"):
        assert fig in names


@pytest.mark.parametrize("name", SWEEPS)
def test_sweep_study_loads_and_names_its_figure(name, monkeypatch):
    monkeypatch.chdir(REPO)
    study = load_study(STUDIES / f"{name}.yaml")  # builds every cell's config: a bad key fails here
    assert study.paper.startswith("002 ") and study.cells()


@pytest.mark.parametrize("name", MATRICES)
def test_matrix_spec_loads_and_every_row_config_builds(name, monkeypatch):
    monkeypatch.chdir(REPO)  # target configs are relative to the repository root
    spec = load_spec(STUDIES / f"{name}.yaml")
    assert spec.paper.startswith("002 ")
    rows = [*spec.baselines.values(), *(s.overrides if isinstance(s, RunSource) else s for s in spec.sources.values())]
    for target in spec.targets.values():
        for overrides in [[], *rows]:
            cfg = load_config(target.config, [*target.overrides, *overrides])
        model_for_info(replace(cfg, model=replace(cfg.model, num_classes=cfg.model.num_classes or 5)))  # family fits


def _tl(*argv: str) -> None:
    assert ticketlab(list(argv)) == 0


def _shrunk(name: str, out: Path, edit) -> Path:
    """A copy of a study with its base config made absolute and `edit` applied to its mapping."""
    data = yaml.safe_load((STUDIES / f"{name}.yaml").read_text())
    if "config" in data:
        data["config"] = str((STUDIES / data["config"]).resolve())
    edit(data)
    path = out / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))
    return path


@pytest.mark.slow
def test_fig2_fig3_fig4_run_and_report_under_their_paper_headings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    os.symlink(REPO / "configs", tmp_path / "configs")
    _tl("data", "synth-crops", "--seed", "0", "--n-train", "24", "--n-val", "6", "--imbalance", "1.0",
        "--keypoints", "false", "--out", "data/paper002/crops")
    _tl("data", "synth-crops", "--seed", "2", "--n-train", "10", "--n-val", "6", "--imbalance", "1.0",
        "--classes", "[square, triangle, hexagon, star, cross]", "--keypoints", "false",
        "--out", "data/paper002/classify")
    _tl("find", "configs/paper002_cpu_supervised.yaml", "--out", "runs/paper002/theta/supervised",
        *[a for o in [*TINY, "prune.levels=0"] for a in ("--set", o)])

    def fig2(d):
        d["set"] += [*TINY, "prune.levels=2"]

    _tl("sweep", str(_shrunk("fig2_supervised", tmp_path, fig2)), "--out", "runs/paper002/fig2_supervised")

    def fig3(d):
        d["seeds"] = [0, 1]
        d["targets"]["polygons"]["set"] += TINY
        d.pop("baselines")
        d["sources"] = {"m_Img": d["sources"]["m_Img"]}

    _tl("transfer-matrix", str(_shrunk("fig3_classification", tmp_path, fig3)), "--out", "runs/paper002/fig3")
    _tl("report", "runs/paper002/fig3", "--out", "report3")
    _tl("report", "runs/paper002/fig2_supervised", "--out", "report2")

    page = html.unescape((tmp_path / "report3" / "index.html").read_text())
    head = "Paper 002 Fig. 3: transfer to downstream classification — accuracy vs sparsity — "
    for part in ("transfer curves against the source mask's scope sparsity", "cells", "universal verdict"):
        assert f"<h2>{head}{part}</h2>" in page
    assert (tmp_path / "report3" / "fig3_transfer_curves_kept.png").read_bytes()[:4] == b"\x89PNG"
    with open(tmp_path / "report3" / "fig3_matrix.csv", newline="") as f:
        rows = {r["source"]: r for r in csv.DictReader(f)}
    assert set(rows) == {"dense", "m_Img L01", "m_Img L02"}
    for name, row in rows.items():  # each row's mean is the mean of its cells' own accuracy
        cells = [json.loads((tmp_path / "runs/paper002/fig3" / name.replace(" ", "_") / "polygons" / f"seed_{s}" /
                             "level_00" / "metrics.json").read_text())["accuracy"] for s in (0, 1)]
        assert float(row["mean"]) == pytest.approx(statistics.fmean(cells))
        assert f"<td>{statistics.fmean(cells):.4f}</td>" in page
    source = json.loads((tmp_path / "runs/paper002/fig2_supervised/cells/seed=0/level_02/metrics.json").read_text())
    assert float(rows["m_Img L02"]["source_sparsity"]) == pytest.approx(source["sparsity_scope"])
    assert int(rows["m_Img L02"]["source_kept"]) == source["kept_scope"]

    page2 = html.unescape((tmp_path / "report2" / "index.html").read_text())
    assert "<h2>Paper 002 Fig. 2: pre-training task performance of (m_Img, θ_Img) vs sparsity — study" in page2
    assert f"<td>{source['accuracy']:.4f}</td>" in page2

    def fig4(d):  # the RGB pre-training masks onto the 1-channel digits model (conv1 summed over RGB)
        d["seeds"] = [0]
        d["targets"]["digits"]["set"] += TINY
        d.pop("baselines")
        d["sources"] = {"m_Img": d["sources"]["m_Img"]}

    _tl("transfer-matrix", str(_shrunk("fig4_domain_gap", tmp_path, fig4)), "--out", "runs/paper002/fig4")
    _tl("report", "runs/paper002/fig4", "--out", "report4")
    page4 = html.unescape((tmp_path / "report4" / "index.html").read_text())
    assert "<h2>Paper 002 Fig. 4: transfer to a domain-gap classification task — accuracy vs sparsity — cells</h2>" in page4
    for row in ("m_Img_L01", "m_Img_L02"):
        cell = tmp_path / "runs/paper002/fig4" / row / "digits" / "seed_0"
        init = json.loads((cell / "init.json").read_text())
        assert init["weights"]["adapted"] == {"conv1.weight": "summed over 3 input channels (RGB) into 1"}
        level = tmp_path / "runs/paper002/fig2_supervised/cells/seed=0" / f"level_{row[-2:]}"
        assert init["transfer"]["source"] == "runs/paper002/fig2_supervised/cells/seed=0/" + level.name
        assert init["transfer"]["tensors"] == len(load_mask(level / "mask.safetensors"))   # every masked tensor landed
        assert f"<td>{json.loads((cell / 'level_00' / 'metrics.json').read_text())['accuracy']:.4f}</td>" in page4


def test_matrix_spec_paper_must_be_text(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text("paper: 3\ntargets: {t: {config: c.yaml}}\nsources: {s: [init.mode=mask]}\n")
    with pytest.raises(TicketlabError, match=r"spec.yaml: paper: expected the figure or table"):
        load_spec(spec)
    spec.write_text("paper: \"002 Fig. 3: x\"\ntargets: {t: {config: c.yaml}}\nsources: {s: [init.mode=mask]}\n")
    assert load_spec(spec).paper == "002 Fig. 3: x"
