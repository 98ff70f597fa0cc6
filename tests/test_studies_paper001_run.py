"""Paper 001's figure studies (studies/paper001/*.yaml) run end to end through `ticketlab sweep` and
`ticketlab report` at a tiny size, and the report page shows each one's figure or table under its
"Paper …" heading, with the values the cells' metrics.json hold.

Each study runs from a shrunken copy: the same base config and `set:` lines, then overrides for a
handful of 64-px scenes and a few iterations, one seed, and (where an axis is long) two of its values.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
import yaml

from ticketlab.cli import main
from ticketlab.data.synth import SynthConfig, generate_synthetic

STUDIES = Path(__file__).resolve().parents[1] / "studies" / "paper001"
TINY = ["train.duration=2it", "train.warmup=1it", "train.milestones=[1it]", "train.eval_every=2it",
        "train.checkpoint_every=2it", "train.batch_size=2", "train.eval_batch_size=2", "model.width=0.25",
        "model.detection.box_score_thresh=0.0"]
ROUNDS = ["prune.levels=2"]  # the ticket curve needs two pruned levels, not the study's three
# per study: more overrides and shortened axes (the study's own values need its 40-iteration schedule)
SHORT = {"fig1_maskrcnn": (ROUNDS, {}), "fig1_keypointrcnn": (ROUNDS, {}), "fig2a_base_top": (ROUNDS, {}),
         "fig2ce_global_layerwise": (ROUNDS, {}),
         "fig2d_oneshot_iterative": ([], {"schedule": [{"prune.rate": 0.75, "prune.levels": 1},
                                                       {"prune.rate": 0.5, "prune.levels": 2}]}),
         "fig2b_late_reset": ([], {"prune.rewind": ["init", "1it"]}),
         "fig2f_early_bird": (["train.duration=10it", "train.eval_every=10it"], {}),  # 6 distinct draw steps
         "fig3_r18_r50": (ROUNDS, {})}
# what each study's page must show, besides its cells table: the headings after "Paper <paper> — "
FIGURES = {
    "fig1_maskrcnn": ["segm_AP vs sparsity", "bbox_AP vs sparsity"],
    "fig1_keypointrcnn": ["keypoints_AP vs sparsity"],
    "fig2a_base_top": ["bbox_AP vs sparsity"],
    "fig2ce_global_layerwise": ["bbox_AP vs sparsity"],
    "fig2d_oneshot_iterative": ["bbox_AP vs schedule"],
    "fig2b_late_reset": ["bbox_AP vs prune.rewind"],
    "fig2f_early_bird": [],
    "fig3_r18_r50": ["segm_AP vs sparsity", "bbox_AP vs sparsity", "segm_AP vs backbone"],
    "table3_modules": [],
}
# and the report sections (no paper heading) that draw the rest of the figure
SECTIONS = {"fig2ce_global_layerwise": ["Weights kept per layer"], "fig2f_early_bird": ["Early-bird tickets"]}


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    root = tmp_path_factory.mktemp("scenes")
    generate_synthetic(root / "synth", SynthConfig(n_train=4, n_val=2, seed=3, image_size=64))
    return root / "synth"


def shrunk(name: str, scenes: Path, where: Path) -> tuple[Path, dict]:
    spec = yaml.safe_load((STUDIES / f"{name}.yaml").read_text())
    spec["config"] = str((STUDIES / spec["config"]).resolve())
    more, axes = SHORT.get(name, ([], {}))
    spec["set"] = [*spec["set"], *TINY, *more, f"data.root={scenes}"]
    spec["grid"] = {**spec["grid"], **axes, "train.seed": [0]}
    path = where / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False, allow_unicode=True))
    return path, spec


def mean_of(text: str) -> float:
    return float(re.match(r"-?[0-9.]+", text).group(0))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(FIGURES))
def test_study_runs_and_its_report_shows_the_paper_figure(name, scenes, tmp_path):
    study, spec = shrunk(name, scenes, tmp_path)
    out, report = tmp_path / name, tmp_path / "report"
    assert main(["sweep", str(study), "--out", str(out)]) == 0
    if name == "fig2f_early_bird":  # the retrained early-bird ticket beside the IoU curve
        assert main(["branch", str(next((out / "cells").iterdir()) / "level_01"), "early_bird",
                     "--fraction", "0.5"]) == 0
    assert main(["report", str(out), "--out", str(report)]) == 0
    page = (report / "index.html").read_text()
    paper = spec["paper"]
    assert f"Paper {paper} — study {name}" in page
    for heading in FIGURES[name]:
        assert f"Paper {paper} — {heading}" in page
    for heading in SECTIONS.get(name, []):
        assert heading in page
    assert '<img src="' in page

    cells = {c["name"]: c for c in json.loads((out / "study.json").read_text())["cells"]}
    rows = list(csv.DictReader(open(report / f"{name}_cells.csv", encoding="utf-8")))
    assert len(rows) == len(cells) and all(c["finished"] for c in cells.values())
    head = next(k for k in rows[0] if k.endswith(" mean (std)") and not k.startswith("dense"))
    metric = head.removesuffix(" mean (std)")
    found = []
    for cell in cells.values():  # one seed: each row's mean is its cell's metric at the row's level
        run = out / "cells" / cell["name"]
        last = max(int(p.name.split("_")[1]) for p in run.glob("level_*") if (p / "metrics.json").is_file())
        found.append(round(json.loads((run / f"level_{last:02d}" / "metrics.json").read_text())[metric], 4))
    assert sorted(found) == sorted(round(mean_of(r[head]), 4) for r in rows)
    if name == "table3_modules":
        assert len(rows) == 16 and {r["base"] for r in rows} == {"✓", "–"}
        for r in (r for r in rows if "✓" in (r["base"], r["top"], r["rpn"], r["box_head"])):
            # one shot to 80% of the chosen groups: network sparsity = 0.8 × their share
            assert float(r["network sparsity"]) == pytest.approx(0.8 * float(r["Param %"]), rel=1e-3, abs=1e-9)
    if name == "fig2f_early_bird":
        draws = list(csv.DictReader(open(report / "early_bird.csv", encoding="utf-8")))
        wanted = yaml.safe_load(next(s for s in spec["set"] if s.startswith("prune.early_bird=")).split("=", 1)[1])
        assert {float(d["fraction"]) for d in draws} >= set(wanted)  # each draw (and the final one)
        assert sum(1 for d in draws if d["retrained"]) == 1
