"""Reading run dirs, grouping seeds into series, mean/std and the matching verdict (analysis/runs.py).

The run dirs here are written with the project's own writers (RunDir.start, write_metrics,
save_mask) with chosen numbers, so the expected means, stds and verdicts can be worked out by hand.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest
import torch

from ticketlab.analysis.runs import (
    aggregate,
    default_level,
    group_series,
    load_run,
    load_runs,
    run_labels,
    series_labels,
)
from ticketlab.config import load_config
from ticketlab.errors import TicketlabError
from ticketlab.rundir import RunDir, level_name, write_metrics
from ticketlab.sparsity import save_mask


def write_run(root: Path, overrides: list[str], accuracies: list[float], config: str = "configs/digits_lenet.yaml",
              headline: str = "accuracy") -> Path:
    run = RunDir(root)
    run.start(load_config(config, overrides))
    for level, acc in enumerate(accuracies):
        d = run.level_dir(level)
        d.mkdir()
        kept = 0.8 ** level
        save_mask(d / "mask.safetensors", {"w": torch.arange(10) < round(10 * kept)})
        write_metrics(d, {"level": level, "sparsity_scope": 1 - kept, "sparsity_network": 0.9 * (1 - kept),
                          "kept_scope": 10, "scope_size": 10, headline: acc, "val_loss": 1.0 - acc,
                          "steps": 5, "seconds": 0.1})
    run.write_summary()
    return root


DENSE = [0.90, 0.80, 0.85]          # mean 0.85, sample std 0.05 → matching threshold 0.80
GLOBAL = {0: DENSE, 1: [0.84, 0.82, 0.83], 2: [0.70, 0.80, 0.75], 3: [0.81, 0.82, 0.80]}


@pytest.fixture
def four_runs(tmp_path):
    paths = []
    for i, seed in enumerate((0, 1, 2)):
        levels = ["prune.levels=3"] if seed != 1 else ["prune.levels=5"]   # how far a run went: same series
        paths.append(write_run(tmp_path / f"global_s{seed}", [f"train.seed={seed}", *levels],
                               [GLOBAL[lv][i] for lv in range(4)]))
    paths.append(write_run(tmp_path / "layerwise_s0", ["train.seed=0", "prune.strategy=layerwise"],
                           [0.86, 0.86, 0.87, 0.70]))
    return paths


def test_seeds_of_one_config_form_a_series_labelled_by_what_differs(four_runs):
    series = group_series(load_runs(four_runs))
    assert [s.label for s in series] == ["prune.strategy=global", "prune.strategy=layerwise"]
    assert [r.label for r in series[0].runs] == ["global_s0", "global_s1", "global_s2"]
    assert series[0].seeds == [0, 1, 2] and series[1].seeds == [0]
    assert series[0].headline == "accuracy"


def test_mean_sample_std_and_matching_per_level(four_runs):
    series = group_series(load_runs(four_runs))
    stats = aggregate(series[0])
    assert [s.level for s in stats] == [0, 1, 2, 3]
    for s in stats:
        acc = s.values["accuracy"]
        assert acc.mean == statistics.mean(GLOBAL[s.level])
        assert acc.std == statistics.stdev(GLOBAL[s.level])
        assert acc.n == s.runs == 3
        assert s.values["sparsity_scope"].mean == statistics.mean([1 - 0.8 ** s.level] * 3)
    assert list(stats[0].values)[:3] == ["sparsity_scope", "sparsity_network", "accuracy"]
    assert "steps" not in stats[0].values and "seconds" not in stats[0].values
    # threshold 0.85 - 0.05 = 0.80: level 1 (0.83) yes, level 2 (0.75) no, level 3 (0.81) yes
    assert [s.matching for s in stats] == [None, True, False, True]


def test_a_single_seed_has_no_std_and_is_judged_against_the_dense_value(four_runs):
    series = group_series(load_runs(four_runs))
    stats = aggregate(series[1])
    assert stats[0].values["accuracy"].std is None
    assert [s.matching for s in stats] == [None, True, True, False]


def test_default_level_is_the_sparsest_level_where_every_series_matches(four_runs):
    runs = load_runs(four_runs)
    series = group_series(runs)
    stats = [aggregate(s) for s in series]
    # global matches at 1 and 3, layerwise at 1 and 2: only level 1 (besides dense) suits both
    assert default_level(runs, stats) == 1
    only_global = load_runs(four_runs[:3])
    assert default_level(only_global, [aggregate(s) for s in group_series(only_global)]) == 3


def test_default_level_is_the_last_one_when_no_pruned_level_matches(tmp_path):
    """Level 0's masks are all ones: mask figures drawn there would show nothing."""
    runs = load_runs([write_run(tmp_path / "a", ["train.seed=0"], [0.9, 0.5, 0.4])])
    stats = [aggregate(s) for s in group_series(runs)]
    assert [s.matching for s in stats[0]] == [None, False, False]
    assert default_level(runs, stats) == 2
    one_level = load_runs([write_run(tmp_path / "b", ["train.seed=0"], [0.9])])
    assert default_level(one_level, [aggregate(s) for s in group_series(one_level)]) == 0


def test_levels_missing_in_some_runs_are_averaged_over_the_others(tmp_path):
    a = write_run(tmp_path / "a", ["train.seed=0"], [0.9, 0.8, 0.7])
    b = write_run(tmp_path / "b", ["train.seed=1"], [0.8, 0.6])
    [series] = group_series(load_runs([a, b]))
    stats = aggregate(series)
    assert [(s.level, s.runs) for s in stats] == [(0, 2), (1, 2), (2, 1)]
    assert stats[2].values["accuracy"].mean == 0.7 and stats[2].values["accuracy"].std is None
    assert stats[1].values["accuracy"].mean == statistics.mean([0.8, 0.6])


def test_detection_runs_use_bbox_ap_as_headline(tmp_path):
    run = load_run(write_run(tmp_path / "det", [], [0.3, 0.31], config="configs/synth_fasterrcnn_lite.yaml",
                             headline="bbox_AP"))
    assert run.headline == "bbox_AP"
    [series] = group_series([run])
    assert [s.matching for s in aggregate(series)] == [None, True]


def test_run_labels_are_dir_names_made_unique_with_parents():
    labels = run_labels([Path("/x/a/run"), Path("/x/b/run"), Path("/x/c/other")])
    assert labels == ["a/run", "b/run", "other"]


def test_bad_run_dirs_are_one_line_errors(tmp_path, four_runs):
    cases = [
        (tmp_path / "missing", "no such run directory"),
        (tmp_path, "not a ticketlab run directory"),
        (four_runs[0] / level_name(1), "is a level directory"),
        (four_runs[0] / "config.yaml", "not a directory"),
    ]
    for path, message in cases:
        with pytest.raises(TicketlabError, match=message) as e:
            load_run(path)
        assert "\n" not in str(e.value)
    empty = tmp_path / "empty"
    RunDir(empty).start(load_config("configs/digits_lenet.yaml"))
    with pytest.raises(TicketlabError, match="no finished level"):
        load_run(empty)
    with pytest.raises(TicketlabError, match="given twice"):
        load_runs([four_runs[0], four_runs[0]])


def test_series_labels_stay_unique_when_many_keys_differ():
    base = {"a": 1, "b": 1, "c": 1, "d": 1}
    labels = series_labels([base, {**base, "a": 2, "b": 2, "c": 2}, {**base, "a": 2, "b": 2, "c": 2, "d": 2}])
    assert len(set(labels)) == 3
    assert labels[0] == "a=1, b=1, c=1, d=1"
    assert series_labels([{"model.family": "lenet_300_100", "prune.strategy": "global"}]) == [
        "lenet_300_100 · global"]
