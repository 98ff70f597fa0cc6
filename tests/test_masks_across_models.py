"""Paper 002 Fig. 6–8 in `ticketlab report` from real run dirs of six model kinds (classifier, SimCLR,
MoCo, Faster R-CNN, DeepLabV3, DeepLabv3+, all on a ResNet-50 at width 0.125), and `ticketlab controls`.

Each run is real IMP (two levels of 50%, one training step per level), so the masks are what the tool
writes; the report's numbers are checked against counts made here with numpy on the mask files, with
each model's trunk prefix written out by hand."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from ticketlab.analysis.report import write_report
from ticketlab.analysis.runs import load_run
from ticketlab.analysis.trunk import trunk_prefix
from ticketlab.cli import main
from ticketlab.config import load_config
from ticketlab.data.synth import SynthConfig, generate_synthetic
from ticketlab.data.synth.crops import CropConfig, write_crops
from ticketlab.lottery.imp import run_imp
from ticketlab.sparsity import load_mask

pytestmark = pytest.mark.slow

COMMON = ["train.duration=1it", "train.eval_every=1it", "train.checkpoint_every=1it", "train.batch_size=2",
          "train.eval_batch_size=4", "prune.levels=2", "prune.rate=0.5", "model.width=0.125", "train.warmup=0it"]
PREFIX = {"classifier": "", "simclr": "backbone.", "moco": "backbone.", "detector": "backbone.body.",
          "segmenter": "backbone.", "deeplabv3plus": "backbone."}


@pytest.fixture(scope="module")
def kinds(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("kinds")
    generate_synthetic(root / "scenes", SynthConfig(n_train=4, n_val=2, seed=3, image_size=64))
    write_crops(root / "crops", SynthConfig(n_train=8, n_val=4, seed=0, image_size=64, classes=["disc", "square"],
                                            imbalance=1.0, keypoints=False), CropConfig(crop_size=32, min_area=16))
    crops, scenes = f"data.root={root / 'crops'}", f"data.root={root / 'scenes'}"
    plan = {
        "classifier": ("configs/paper002_cpu_supervised.yaml", [crops, "model.family=resnet50"]),
        "simclr": ("configs/paper002_cpu_simclr.yaml", [crops, "model.family=resnet50", "ssl.knn_k=2"]),
        "moco": ("configs/paper002_cpu_simclr.yaml", [crops, "task=moco", "model.family=resnet50", "ssl.knn_k=2",
                                                      "ssl.moco_queue=8"]),
        "detector": ("configs/synth_fasterrcnn_lite.yaml", [scenes, "model.backbone=resnet50",
                                                            "prune.scope=[base, top]"]),
        "segmenter": ("configs/synth_deeplabv3_lite.yaml", [scenes, "data.image_size=48",
                                                            "model.segmentation.head_channels=8"]),
        "deeplabv3plus": ("configs/synth_deeplabv3plus_lite.yaml", [scenes, "data.image_size=48"]),
    }
    runs = {}
    for name, (config, extra) in plan.items():
        runs[name] = root / name
        run_imp(load_config(config, COMMON + extra), runs[name], log=lambda s: None)
    return runs


@pytest.fixture(scope="module")
def report(kinds, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    assert main(["controls", str(kinds["classifier"]), "--levels", "1,2"]) == 0
    return write_report(list(kinds.values()), out, level=2), out


def _trunk(path: Path, level: int, prefix: str) -> dict[str, np.ndarray]:
    mask = load_mask(path / f"level_{level:02d}" / "mask.safetensors")
    return {n[len(prefix):]: m.numpy() for n, m in mask.items()
            if n.startswith(prefix) and not n[len(prefix):].startswith("fc.")}


def _rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_trunk_prefix_of_each_model_kind(kinds):
    assert {k: trunk_prefix(load_run(p)) for k, p in kinds.items()} == PREFIX


def test_fig6_similarity_and_zero_kernels_equal_counts_on_the_mask_files(kinds, report):
    _, out = report
    rows = _rows(out / "fig6_similarity.csv")
    names = list(kinds)
    assert {(r["run_a"], r["run_b"]) for r in rows} == {(a, b) for i, a in enumerate(names) for b in names[i + 1:]}
    assert sorted({int(r["level"]) for r in rows}) == [0, 1, 2]
    for r in rows:
        level = int(r["level"])
        a = _trunk(kinds[r["run_a"]], level, PREFIX[r["run_a"]])
        b = _trunk(kinds[r["run_b"]], level, PREFIX[r["run_b"]])
        shared = [n for n in a if n in b and a[n].shape == b[n].shape]
        assert int(r["tensors_compared"]) == len(shared) > 50          # every bottleneck conv of layer1-4
        x = np.concatenate([a[n].ravel() for n in shared])
        y = np.concatenate([b[n].ravel() for n in shared])
        assert float(r["similarity"]) == pytest.approx((x & y).sum() / (x | y).sum(), abs=1e-12)
        assert float(r["trunk_sparsity_a"]) == pytest.approx(1 - x.mean(), abs=1e-12)
    # level 2 of two different tasks: the masks differ, but not entirely
    level2 = [float(r["similarity"]) for r in rows if r["level"] == "2"]
    assert all(0.0 < s < 1.0 for s in level2)

    for r in _rows(out / "fig6_zero_kernels.csv"):
        m = _trunk(kinds[r["run"]], int(r["level"]), PREFIX[r["run"]])
        convs = [t for t in m.values() if t.ndim == 4]
        zero = sum(int((~t.reshape(t.shape[0], t.shape[1], -1).any(axis=2)).sum()) for t in convs)
        assert (int(r["zero_kernels"]), int(r["kernels"])) == (zero, sum(t.shape[0] * t.shape[1] for t in convs))
        assert (zero > 0) == (r["level"] != "0")


def test_fig7_counts_each_stage_layer(kinds, report):
    result, out = report
    rows = _rows(out / "fig7_stage_kernels_level_02.csv")
    assert {r["stage"] for r in rows} == {"layer1", "layer2", "layer3", "layer4"}
    assert {r["run"] for r in rows} == set(kinds)
    for r in rows:
        t = _trunk(kinds[r["run"]], 2, PREFIX[r["run"]])[r["layer"]]
        assert r["layer"].startswith(r["stage"] + ".")
        assert int(r["zero_kernels"]) == int((~t.reshape(t.shape[0], t.shape[1], -1).any(axis=2)).sum())
        assert int(r["kernels"]) == t.shape[0] * t.shape[1]
    page = result.index.read_text(encoding="utf-8")
    for name in ("fig6_masks_vs_sparsity.png", "fig7_stage_kernels_level_02.png", "fig8_controls.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and name in page


def test_controls_are_branches_that_keep_counts_and_resume(kinds, report):
    _, out = report
    run = kinds["classifier"]
    for level in (1, 2):
        ticket = load_mask(run / f"level_{level:02d}" / "mask.safetensors")
        d = run / f"level_{level:02d}"
        complement = load_mask(d / "branch_complement" / "mask.safetensors")
        random = load_mask(d / "branch_random_mask" / "mask.safetensors")
        perturbed = load_mask(d / "branch_perturb_0.1" / "mask.safetensors")
        for n, m in ticket.items():
            assert bool((complement[n] == ~m).all())
            assert int(random[n].sum()) == int(perturbed[n].sum()) == int(m.sum())     # same count per tensor
            flipped_off = int((m & ~perturbed[n]).sum())
            assert flipped_off == int((~m & perturbed[n]).sum()) == min(round(0.1 * int(m.sum())), int((~m).sum()))
    table = _rows(out / "fig8_controls.csv")
    assert {r["run"] for r in table} == {"classifier"}          # the only run with controls
    assert {r["curve"] for r in table} == {"m (IMP ticket)", "m^c (complement)", "m_r (random, same counts)",
                                            "m + Δm 10%"}
    for r in table:
        sub = {"m (IMP ticket)": "", "m^c (complement)": "branch_complement",
               "m_r (random, same counts)": "branch_random_mask", "m + Δm 10%": "branch_perturb_0.1"}[r["curve"]]
        metrics = json.loads((run / f"level_{int(r['level']):02d}" / sub / "metrics.json").read_text())
        assert float(r["value"]) == pytest.approx(metrics["accuracy"])
        assert float(r["sparsity_scope"]) == pytest.approx(metrics["sparsity_scope"])
    finals = sorted(run.glob("level_0[12]/branch_*/final.safetensors"))
    assert len(finals) == 6
    before = [f.stat().st_mtime_ns for f in finals]
    assert main(["controls", str(run)]) == 0                   # every level ≥ 1: all finished, nothing retrained
    assert [f.stat().st_mtime_ns for f in finals] == before
