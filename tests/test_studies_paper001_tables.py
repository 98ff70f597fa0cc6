"""Paper 001's transfer tables and breakdown studies (studies/paper001/table*.yaml, fig4_5_*.yaml,
appc_*.yaml): they load with the paper's grids, and shrunken copies run end to end through
`ticketlab transfer-matrix` / `sweep` and `ticketlab report`, whose page shows each table or figure
under its "Paper 001 …" heading with the numbers the cells recorded."""

from __future__ import annotations

import csv
import html
import json
import statistics
from pathlib import Path

import pytest
import yaml

from ticketlab.analysis.transfer_table import paper_table
from ticketlab.cli import main
from ticketlab.lottery.study import load_study

REPO = Path(__file__).resolve().parents[1]
STUDIES = REPO / "studies" / "paper001"
TINY = ["train.duration=2it", "train.eval_every=2it", "train.checkpoint_every=2it", "train.warmup=1it",
        "train.milestones=[1it]", "train.batch_size=2", "model.detection.box_score_thresh=0.0"]


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _metrics(run: Path, level: int) -> dict:
    return json.loads((run / f"level_{level:02d}" / "metrics.json").read_text())


def test_paper_table_pivots_sources_by_targets():
    rows = [{"source": s, "target": t, "metric": m, "mean": v, "std": sd, "seeds": n, "sparsity_network": net,
             "sparsity_transferred": moved}
            for s, t, m, v, sd, n, net, moved in [
                ("dense", "det", "bbox_AP", 0.3, 0.0, 1, 0.0, None), ("dense", "det", "segm_AP", 0.2, 0.0, 1, 0.0, None),
                ("ticket", "det", "bbox_AP", 0.25, 0.0, 1, 0.316, 0.9), ("ticket", "det", "segm_AP", 0.1, 0.0, 1, 0.316, 0.9),
                ("dense", "voc", "voc07_mAP", 0.68, 0.01, 3, 0.0, None),
                ("ticket", "voc", "voc07_mAP", 0.64, 0.02, 3, 0.795, 0.9)]]
    header, body = paper_table(rows)
    assert header == ["source", "det: network sparsity", "det: transferred pruned", "det: bbox_AP", "det: segm_AP",
                      "voc: network sparsity", "voc: transferred pruned", "voc: voc07_mAP"]
    assert body == [["dense", "0.00%", "—", "0.3000", "0.2000", "0.00%", "—", "0.6800 (±0.0100)"],
                    ["ticket", "31.60%", "90.00%", "0.2500", "0.1000", "79.50%", "90.00%", "0.6400 (±0.0200)"]]


@pytest.mark.parametrize("name,levels", [("fig4_5_maskrcnn", 3), ("appc_keypoints", 3), ("appd_convergence", 2)])
def test_breakdown_studies_prune_to_the_papers_levels(name, levels):
    study = load_study(STUDIES / f"{name}.yaml")
    assert study.paper.startswith("001 ") and len(study.cells()) == 1
    sets = dict(o.split("=", 1) for o in study.common)
    rate = float(sets["prune.rate"])
    assert int(sets["prune.levels"]) == levels
    kept = [(1 - rate) ** k for k in range(1, levels + 1)]
    assert any(abs(k - 0.2) < 1e-3 for k in kept)  # 20% of the weights left (Fig. 5, App. C, D)
    assert min(kept) < 0.1 or name == "appd_convergence"  # and past 90% (Fig. 4, 5; App. D stops at 80%)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("p001")
    data = root / "data"
    assert main(["data", "synth", "--out", str(data / "synth64_320"), "--image-size", "64", "--n-train", "6",
                 "--n-val", "4", "--max-objects", "3"]) == 0
    assert main(["data", "synth-crops", "--out", str(data / "crops"), "--n-train", "12", "--n-val", "8",
                 "--imbalance", "1.0"]) == 0
    from ticketlab.data.voc_write import synth_to_voc
    synth_to_voc(data / "synth64_320", data / "voc64_320" / "VOC2007")
    source = root / "runs" / "imagenet_r18"
    assert main(["find", "configs/paper001_cpu_imagenet_r18.yaml", "--out", str(source),
                 "--set", f"data.root={data / 'crops'}", "--set", "prune.levels=1", *(
                     x for o in TINY[:4] + ["train.batch_size=8", "prune.rewind=1it"] for x in ("--set", o))]) == 0
    return root, source


def _shrunk(text: str, root: Path, source: Path) -> str:
    return (text.replace("runs/paper001/imagenet_r18", str(source))
            .replace("data.root=data/", f"data.root={root / 'data'}/"))


@pytest.mark.slow
def test_table1_matrix_reports_the_paper_form_with_the_cells_numbers(tiny_data, tmp_path):
    root, source = tiny_data
    spec = yaml.safe_load(_shrunk((STUDIES / "table1_imagenet_tickets.yaml").read_text(), root, source))
    del spec["targets"]["coco_keypoints"]  # the test's time: the keypoint column is built the same way
    assert spec["seeds"] == [0] and spec["targets"]["voc_det"]["seeds"] == [0, 1, 2, 3, 4]  # COCO once, VOC: 5 runs
    spec["targets"]["voc_det"]["seeds"] = [0, 1]  # the test's time
    for target in spec["targets"].values():
        target["set"] += TINY
    spec["sources"]["direct IMP"] = ["prune.levels=1", "prune.rate=0.5528"]
    path = tmp_path / "table1.yaml"
    path.write_text(yaml.safe_dump(spec, allow_unicode=True))
    out = tmp_path / "table1"
    assert main(["transfer-matrix", str(path), "--out", str(out)]) == 0
    verdicts = {r["target"]: r["metric"] for r in _rows(out / "matrix.csv")}
    assert verdicts == {"coco_det_seg": "segm_AP", "voc_det": "voc07_mAP"}  # VOC data: judged by VOC07 mAP

    assert main(["report", str(out), "--out", str(tmp_path / "report")]) == 0
    page = html.unescape((tmp_path / "report" / "index.html").read_text())
    assert "Paper 001 Table 1: ImageNet tickets (ResNet-18) in the R-CNN backbones vs direct pruning — " in page
    table = _rows(tmp_path / "report" / "table1_paper_table.csv")
    assert [r["source"] for r in table] == ["dense", "ImageNet ticket L01", "direct IMP"]
    for r in table:
        cell = out / r["source"].replace(" ", "_")
        level = 1 if r["source"] == "direct IMP" else 0
        det = _metrics(cell / "coco_det_seg" / "seed_0", level)
        voc, voc1 = (_metrics(cell / "voc_det" / f"seed_{s}", level) for s in (0, 1))
        assert not (cell / "coco_det_seg" / "seed_1").exists()
        for key in ("bbox_AP", "bbox_AP50", "segm_AP", "segm_AP50"):
            assert r[f"coco_det_seg: {key}"] == f"{det[key]:.4f}"
        maps = [voc["voc07_mAP"], voc1["voc07_mAP"]]
        assert r["voc_det: voc07_mAP"] == f"{statistics.fmean(maps):.4f} (±{statistics.stdev(maps):.4f})"
        assert r["voc_det: network sparsity"] == f"{100 * voc['sparsity_network']:.2f}%"
        if r["source"] == "ImageNet ticket L01":  # the source's 55.3% of layer1–4, as Table 1's "Prune %"
            assert r["coco_det_seg: transferred pruned"] == f"{100 * _metrics(source, 1)['sparsity_scope']:.2f}%"
        else:
            assert r["coco_det_seg: transferred pruned"] == "—"


@pytest.mark.slow
def test_breakdown_study_heads_figs_4_5_and_convergence_with_the_paper(tiny_data, tmp_path):
    root, source = tiny_data
    text = _shrunk((STUDIES / "fig4_5_maskrcnn.yaml").read_text(), root, source)
    study = yaml.safe_load(text)
    study["config"] = str(REPO / "configs" / "synth_maskrcnn_lite.yaml")
    study["set"] = [o for o in study["set"] if not o.startswith("prune.levels")] + ["prune.levels=1", *TINY]
    path = tmp_path / "fig4_5.yaml"
    path.write_text(yaml.safe_dump(study, allow_unicode=True))
    out = tmp_path / "fig4_5"
    assert main(["sweep", str(path), "--out", str(out)]) == 0
    assert main(["report", str(out), "--out", str(tmp_path / "report")]) == 0
    page = html.unescape((tmp_path / "report" / "index.html").read_text())
    paper = f"Paper {study['paper']} — "
    for heading in ("AP by object size", "AP per category, frequent to rare", "Easy vs hard categories",
                    "Detection and segmentation errors (TIDE)", "Convergence: dense vs ticket"):
        assert paper + heading in page, heading
    run = out / "cells" / "seed=0"
    sizes = [r for r in _rows(next((tmp_path / "report").glob("ap_by_size_*.csv"))) if r["level"] == "0"]
    assert {r["iou_type"] for r in sizes} == {"bbox", "segm"} and sizes
    for r in sizes:  # Fig. 4's AP per size is COCOeval's APs / APm of the level's detections
        assert float(r["AP"]) == pytest.approx(_metrics(run, 0)[f"{r['iou_type']}_AP{r['area'][0]}"], abs=1e-9)


def test_columns_that_are_not_metric_names_are_one_line(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"targets": {"t": {"config": "configs/digits_lenet.yaml", "columns": "bbox_AP"}},
                                    "sources": {"s": []}}))
    assert main(["transfer-matrix", str(path)]) == 2
    assert "targets.t.columns: expected a list of metric names" in capsys.readouterr().err
