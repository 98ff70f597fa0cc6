"""The report's "Weights kept per layer" section (paper 001 Fig. 2c) on hand-built run dirs: runs that
differ only by seed are one series, drawn as one bar per layer with the mean and sample std of the
kept fraction over the seeds, and written to the by-series CSV beside the figure."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch
from PIL import Image

from hand_levels import write_ticket_level
from ticketlab.analysis.mask_sections import AtLevel, kept_section
from ticketlab.analysis.runs import group_series, load_runs
from ticketlab.config import load_config
from ticketlab.rundir import RunDir, level_name
from ticketlab.sparsity import load_mask

SHAPES = {"a.weight": (4, 5), "b.weight": (2, 3, 2, 2)}
# (strategy, seed) → weights kept per tensor
KEPT = {("global", 0): {"a.weight": 10, "b.weight": 6}, ("global", 1): {"a.weight": 14, "b.weight": 3},
        ("layerwise", 0): {"a.weight": 5, "b.weight": 6}, ("layerwise", 1): {"a.weight": 6, "b.weight": 6}}


def _mask(seed: int, kept: dict[str, int]) -> dict[str, torch.Tensor]:
    """`kept[name]` weights kept per tensor, at positions drawn by `seed`."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, shape in SHAPES.items():
        flat = torch.zeros(math.prod(shape), dtype=torch.bool)
        flat[torch.randperm(flat.numel(), generator=g)[:kept[name]]] = True
        out[name] = flat.reshape(shape)
    return out


@pytest.fixture(scope="module")
def run_dirs(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("kept")
    paths = []
    for (strategy, seed), kept in KEPT.items():
        run = RunDir(root / f"{strategy}_s{seed}")
        run.start(load_config("configs/digits_lenet.yaml", [f"prune.strategy={strategy}", f"train.seed={seed}"]))
        state = {n: torch.randn(shape) for n, shape in SHAPES.items()}
        write_ticket_level(run.level_dir(1), state, _mask(seed, kept))
        paths.append(run.root)
    return paths


def _section(paths: list[Path], out: Path):
    runs = load_runs(paths)
    out.mkdir()
    at = AtLevel(out=out, runs=runs, masks=[r.mask(1) for r in runs], level=1, reason="test")
    written: list[Path] = []
    return kept_section(at, group_series(runs), written), written


def _read(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_one_bar_per_series_with_mean_and_sample_std_of_the_seeds(run_dirs, tmp_path):
    block, written = _section(run_dirs, tmp_path / "out")
    rows = _read(tmp_path / "out" / "kept_per_layer_by_series_level_01.csv")
    assert [(r["series"], r["layer"]) for r in rows] == [
        ("prune.strategy=global", "a.weight"), ("prune.strategy=global", "b.weight"),
        ("prune.strategy=layerwise", "a.weight"), ("prune.strategy=layerwise", "b.weight")]
    for r in rows:
        strategy = r["series"].split("=")[1]
        fractions = []
        for seed in (0, 1):
            m = load_mask(run_dirs[0].parent / f"{strategy}_s{seed}" / level_name(1) / "mask.safetensors")
            fractions.append(int(m[r["layer"]].sum()) / m[r["layer"]].numel())
        mean = sum(fractions) / 2
        std = math.sqrt(sum((f - mean) ** 2 for f in fractions) / (2 - 1))
        assert float(r["kept_fraction_mean"]) == pytest.approx(mean, abs=1e-12)
        assert float(r["kept_fraction_std"]) == pytest.approx(std, abs=1e-12)
        assert (int(r["n"]), r["seeds"], int(r["numel"])) == (2, "0 1", math.prod(SHAPES[r["layer"]]))
    # the same numbers from KEPT by hand: global a.weight keeps 10/20 and 14/20, so 0.6 ± sqrt(0.02)
    first = rows[0]
    assert float(first["kept_fraction_mean"]) == pytest.approx(0.6)
    assert float(first["kept_fraction_std"]) == pytest.approx(math.sqrt(0.02))
    assert float(rows[3]["kept_fraction_std"]) == 0.0            # equal seeds: std 0, not undefined
    assert block.data == ["kept_per_layer_by_series_level_01.csv", "kept_per_layer_level_01.csv"]
    assert {p.name for p in written} == {*block.data, block.image}
    assert "n in the legend" in block.caption and "layerwise_s1 (seed 1)" in block.caption
    with Image.open(tmp_path / "out" / block.image) as im:
        assert im.format == "PNG"


def test_a_single_run_is_one_series_of_n_1_without_std(run_dirs, tmp_path):
    _section(run_dirs[:1], tmp_path / "out")
    rows = _read(tmp_path / "out" / "kept_per_layer_by_series_level_01.csv")
    assert [(r["layer"], r["n"], r["seeds"], r["kept_fraction_std"]) for r in rows] == [
        ("a.weight", "1", "0", ""), ("b.weight", "1", "0", "")]
    assert [float(r["kept_fraction_mean"]) for r in rows] == [10 / 20, 6 / 24]
