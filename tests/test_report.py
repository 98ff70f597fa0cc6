"""`ticketlab report` end to end on real IMP runs (digits, three seeds of global pruning and one of
layer-wise pruning) and on conv run dirs: the page links only files that exist, every PNG opens,
the CSVs equal numbers computed here independently, and run labels are escaped."""

from __future__ import annotations

import csv
import json
import statistics
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from PIL import Image

from ticketlab.analysis.report import write_report
from ticketlab.cli import main
from ticketlab.config import load_config
from ticketlab.errors import TicketlabError
from ticketlab.lottery.imp import run_imp
from ticketlab.rundir import RunDir, level_name, write_metrics
from ticketlab.models.cifar_resnet import CifarResNet
from ticketlab.sparsity import full_mask, load_mask, prune_global, prunable_parameter_names, save_mask, sparsity_report

FAST = ["train.duration=1ep", "prune.levels=2"]
EVIL = "<script>alert(1)<"           # a directory name that must not reach the page as markup


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("runs")
    paths = []
    for seed in (0, 1, 2):
        out = root / f"global_s{seed}"
        run_imp(load_config("configs/digits_lenet.yaml", [*FAST, f"train.seed={seed}"]), out, log=lambda s: None)
        paths.append(out)
    out = root / EVIL
    run_imp(load_config("configs/digits_lenet.yaml", [*FAST, "train.seed=0", "prune.strategy=layerwise"]), out,
            log=lambda s: None)
    return paths + [out]


@pytest.fixture(scope="module")
def report(runs, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "out"
    return write_report(runs, out), out


def conv_model() -> CifarResNet:
    torch.manual_seed(0)
    return CifarResNet(20, 0.25, num_classes=10, in_channels=1)


@pytest.fixture(scope="module")
def conv_runs(tmp_path_factory) -> list[Path]:
    """Two seeds of a conv run dir: masks from magnitude pruning of random CifarResNet weights (80% per level),
    and final weights zero where each mask prunes (report checks the levels whose masks it reads)."""
    root = tmp_path_factory.mktemp("conv")
    model = conv_model()
    scope = prunable_parameter_names(model)
    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        weights = {n: torch.randn(p.shape) for n, p in model.named_parameters() if n in scope}
        run = RunDir(root / f"conv_s{seed}")
        run.start(load_config("configs/digits_lenet.yaml", ["model.family=cifar_resnet20", "model.width=0.25",
                                                            f"train.seed={seed}"]))
        mask = full_mask(weights)
        for level in range(3):
            if level:
                mask = prune_global(weights, mask, 0.8)
            d = run.level_dir(level)
            d.mkdir()
            save_mask(d / "mask.safetensors", mask)
            final = {k: v * mask[k] if k in mask else v for k, v in model.state_dict().items()}  # a ticket
            save_file({k: v.contiguous() for k, v in final.items()}, str(d / "final.safetensors"))
            kept = sum(int(m.sum()) for m in mask.values()) / sum(m.numel() for m in mask.values())
            write_metrics(d, {"level": level, "sparsity_scope": 1 - kept, "sparsity_network": 1 - kept,
                              "accuracy": 0.9 - 0.1 * level + 0.01 * seed})
        run.write_summary()
        paths.append(run.root)
    return paths


class Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs: list[str] = []
        self.tags: set[str] = set()
        self.captions: list[str] = []
        self._in_caption = False

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        self.refs += [v for k, v in attrs if k in ("src", "href") and v is not None]
        self._in_caption = self._in_caption or tag == "figcaption"

    def handle_endtag(self, tag):
        if tag == "figcaption":
            self._in_caption = False

    def handle_data(self, data):
        if self._in_caption:
            self.captions.append(data)


def parse(index: Path) -> Links:
    p = Links()
    p.feed(index.read_text(encoding="utf-8"))
    return p


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def metrics(run: Path, level: int) -> dict:
    return json.loads((run / level_name(level) / "metrics.json").read_text())


def test_index_links_only_files_that_exist_and_all_it_wrote(report):
    result, out = report
    html = result.index.read_text(encoding="utf-8")
    page = parse(result.index)
    assert page.refs
    for ref in page.refs:
        assert "://" not in ref and not ref.startswith("/") and "/" not in ref, ref
        assert (out / ref).is_file(), ref
    assert "script" not in page.tags and "://" not in html
    written = {p.name for p in out.iterdir()} - {"index.html"}
    assert written == set(page.refs)
    assert [p.name for p in result.files][-1] == "index.html"
    assert {p.name for p in result.files} == written | {"index.html"}


def test_every_png_is_a_valid_png(report):
    result, out = report
    pngs = sorted(out.glob("*.png"))
    tag = f"level_{result.level:02d}"
    assert {p.name for p in pngs} == {"accuracy_vs_sparsity.png", f"kept_per_layer_{tag}.png",
                                      f"mask_similarity_{tag}.png", f"convergence_{tag}.png",
                                      "fig6_masks_vs_sparsity.png", "early_stopping.png"}
    for p in pngs:
        with Image.open(p) as im:
            im.verify()
            assert im.format == "PNG"
        with Image.open(p) as im:
            assert im.size[0] > 100 and im.size[1] > 100


def test_summary_csv_equals_mean_and_sample_std_over_seeds(report, runs):
    _, out = report
    rows = read_csv(out / "summary_by_series.csv")
    by_series = {"prune.strategy=global": runs[:3], "prune.strategy=layerwise": runs[3:]}
    assert {r["series"] for r in rows} == set(by_series)
    for row in rows:
        members, level = by_series[row["series"]], int(row["level"])
        assert int(row["runs"]) == len(members)
        assert row["seeds"] == " ".join(str(s) for s in ([0, 1, 2] if len(members) == 3 else [0]))
        assert row["headline"] == "accuracy"
        for key in ("accuracy", "sparsity_scope", "sparsity_network", "val_loss"):
            values = [metrics(r, level)[key] for r in members]
            assert float(row[f"{key}_mean"]) == statistics.mean(values)
            if len(values) > 1:
                assert float(row[f"{key}_std"]) == statistics.stdev(values)
            else:
                assert row[f"{key}_std"] == ""
        dense = [metrics(r, 0)["accuracy"] for r in members]
        threshold = statistics.mean(dense) - (statistics.stdev(dense) if len(dense) > 1 else 0.0)
        mean = statistics.mean(metrics(r, level)["accuracy"] for r in members)
        assert row["matching"] == ("" if level == 0 else "yes" if mean >= threshold else "no")


def _matching_levels(members: list[Path]) -> set[int]:
    dense = [metrics(r, 0)["accuracy"] for r in members]
    threshold = statistics.mean(dense) - (statistics.stdev(dense) if len(dense) > 1 else 0.0)
    return {lv for lv in (0, 1, 2) if statistics.mean(metrics(r, lv)["accuracy"] for r in members) >= threshold}


def test_default_level_is_the_sparsest_where_both_series_match(report, runs):
    result, out = report
    both = _matching_levels(runs[:3]) & _matching_levels(runs[3:]) | {0}
    assert result.level == max(both)
    assert (out / f"kept_per_layer_level_{result.level:02d}.csv").is_file()


def _masks_at(runs: list[Path], level: int) -> list[dict]:
    return [load_mask(r / level_name(level) / "mask.safetensors") for r in runs]


def test_similarity_and_kept_csvs_equal_independent_counts(report, runs):
    result, out = report
    level = result.level
    masks = _masks_at(runs, level)
    rows = read_csv(out / f"mask_similarity_level_{level:02d}.csv")
    labels = [r["run"] for r in rows]
    assert labels == ["global_s0", "global_s1", "global_s2", EVIL]
    flat = [np.concatenate([m[n].numpy().ravel() for n in masks[0]]) for m in masks]
    for i, row in enumerate(rows):
        for j, label in enumerate(labels):
            expected = np.count_nonzero(flat[i] & flat[j]) / np.count_nonzero(flat[i] | flat[j])
            assert float(row[label]) == expected
    kept = read_csv(out / f"kept_per_layer_level_{level:02d}.csv")
    expected_rows = [(label, name, m[name].numel(), int(m[name].sum()))
                     for label, m in zip(labels, masks) for name in m]
    assert [(r["run"], r["layer"], int(r["numel"]), int(r["kept"])) for r in kept] == expected_rows
    for r in kept:
        assert float(r["kept_fraction"]) == int(r["kept"]) / int(r["numel"])


def test_run_labels_are_escaped(report):
    result, _ = report
    html = result.index.read_text(encoding="utf-8")
    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert(1)&lt;" in html


def test_captions_say_runs_seeds_level_and_metric(report):
    result, _ = report
    captions = parse(result.index).captions
    text = " ".join(captions)
    assert "accuracy" in captions[0] and "global_s2 (seed 2)" in captions[0]
    assert f"level {result.level}" in text and f"{EVIL} (seed 0)" in text
    assert "No convolution weights" in result.index.read_text(encoding="utf-8")   # LeNet: no kernels


def test_conv_runs_get_zero_kernel_figures_that_agree_with_the_sparsity_report(conv_runs, tmp_path):
    result = write_report(conv_runs, tmp_path / "rep", level=2)
    out = tmp_path / "rep"
    assert result.level == 2 and result.level_reason == "chosen with --level"
    model = conv_model()
    masks = _masks_at(conv_runs, 2)
    rows = read_csv(out / "zero_kernels_level_02.csv")
    expected = []
    for path, mask in zip(conv_runs, masks):
        for t in sparsity_report(model, mask).tensors:
            if t.kernels is not None:
                expected.append((path.name, t.name, t.zero_kernels, t.kernels))
    assert [(r["run"], r["layer"], int(r["zero_kernels"]), int(r["kernels"])) for r in rows] == expected
    assert sum(e[2] for e in expected) > 0
    kmap = read_csv(out / "kernel_map_level_02.csv")
    [layer] = {r["layer"] for r in kmap}
    assert masks[0][layer].shape[2:] == (3, 3)                 # a spatial conv, not a 1×1 downsample
    for path, mask in zip(conv_runs, masks):
        m = mask[layer]
        pruned = [(o, i) for o in range(m.shape[0]) for i in range(m.shape[1]) if not bool(m[o, i].any())]
        assert [(int(r["out_channel"]), int(r["in_channel"])) for r in kmap if r["run"] == path.name] == pruned
    for p in out.glob("*.png"):
        with Image.open(p) as im:
            im.verify()
    assert set(parse(result.index).refs) == {p.name for p in out.iterdir()} - {"index.html"}


def test_cli_report_and_one_line_errors(runs, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["report", str(runs[0]), str(runs[1]), "--out", str(out), "--level", "1"]) == 0
    assert "level 1" in capsys.readouterr().out
    assert (out / "index.html").is_file() and (out / "mask_similarity_level_01.png").is_file()
    for argv, message in [
        (["report", str(tmp_path / "nope"), "--out", str(out)], "no such run directory"),
        (["report", str(tmp_path), "--out", str(out)], "not a ticketlab run directory"),
        (["report", str(runs[0]), "--out", str(out), "--level", "9"], "--level 9: not finished"),
    ]:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("ticketlab: error: ") and message in err and err.count("\n") == 1
    with pytest.raises(TicketlabError):
        write_report([runs[0]], runs[0] / "config.yaml")
