"""The ready studies of paper 001 (studies/paper001/*.yaml) load, and their grids are the paper's."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ticketlab.lottery.study import load_study

STUDIES = Path(__file__).resolve().parents[1] / "studies" / "paper001"
C4 = "synth_fasterrcnn_c4_lite.yaml"
CELLS = {"table3_modules": (16 * 3, C4), "fig2a_base_top": (3, C4), "fig2b_late_reset": (5 * 3, C4),
         "fig2ce_global_layerwise": (2 * 3, C4), "fig2d_oneshot_iterative": (2 * 3, C4), "fig2f_early_bird": (3, C4),
         "fig1_maskrcnn": (3, "synth_maskrcnn_lite.yaml"), "fig1_keypointrcnn": (3, "synth_keypointrcnn_lite.yaml"),
         "fig3_r18_r50": (2 * 3, "synth_maskrcnn_lite.yaml")}


@pytest.mark.parametrize("name", sorted(CELLS))
def test_study_loads_with_every_cell_checked(name):
    study = load_study(STUDIES / f"{name}.yaml")  # builds every cell's config, so a typo fails here
    cells, config = CELLS[name]
    assert len(study.cells()) == cells and study.config.name == config
    assert study.spec()["paper"].startswith("001 ")


def test_table3_study_is_one_shot_to_80_percent_of_the_chosen_modules():
    study = load_study(STUDIES / "table3_modules.yaml")
    scopes = set()
    for cell in study.cells():
        sets = dict(o.split("=", 1) for o in [*study.common, *cell.overrides])
        scopes.add(frozenset(yaml.safe_load(sets["prune.scope"]) or []))
        assert sets["prune.rate"] == "0.8"
    assert max(scopes, key=len) == {"base", "top", "rpn", "box_predictor"} and len(scopes) == 16
