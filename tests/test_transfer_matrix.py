"""`ticketlab transfer-matrix`: every cell an ordinary, resumable run dir; the table from their metrics."""

import csv
import json

import numpy as np
import pytest
import yaml

from ticketlab.cli import main

SMALL = ["model.family=cifar_resnet20", "model.width=0.25", "train.duration=3it", "train.eval_every=3it",
         "train.checkpoint_every=3it", "prune.levels=0"]


@pytest.fixture(scope="module")
def matrix(tmp_path_factory):
    root = tmp_path_factory.mktemp("matrix")
    spec = {"seeds": [0, 1],
            "targets": {"digits": {"config": "configs/digits_lenet.yaml", "set": SMALL}},
            "sources": {"magnitude 50%": ["init.mode=magnitude", "init.sparsity=0.5"]}}
    path = root / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    out = root / "out"
    assert main(["transfer-matrix", str(path), "--out", str(out)]) == 0
    return path, out


def test_cells_are_run_dirs_and_the_table_follows_their_metrics(matrix):
    _, out = matrix
    rows = list(csv.DictReader(open(out / "matrix.csv")))
    assert [(r["source"], r["target"]) for r in rows] == [("dense", "digits"), ("magnitude 50%", "digits")]
    values = {}
    for r, row_dir in zip(rows, ["dense", "magnitude_50"]):
        accs = [json.loads((out / row_dir / "digits" / f"seed_{s}" / "level_00" / "metrics.json").read_text())
                ["accuracy"] for s in (0, 1)]
        values[r["source"]] = accs
        assert float(r["mean"]) == pytest.approx(np.mean(accs))
        assert float(r["std"]) == pytest.approx(np.std(accs, ddof=1))
    dense = values["dense"]
    expected = np.mean(values["magnitude 50%"]) >= np.mean(dense) - np.std(dense, ddof=1)
    assert rows[1]["matching"] == str(bool(expected))
    assert float(rows[1]["sparsity_network"]) > 0 and float(rows[0]["sparsity_network"]) == 0
    assert "✓" in (out / "matrix.md").read_text() or "✗" in (out / "matrix.md").read_text()
    assert (out / "matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_rerun_resumes_without_retraining(matrix):
    path, out = matrix
    files = sorted(out.glob("*/digits/seed_*/level_00/final.safetensors"))
    assert len(files) == 4
    before = [f.stat().st_mtime_ns for f in files]
    assert main(["transfer-matrix", str(path), "--out", str(out)]) == 0
    assert [f.stat().st_mtime_ns for f in files] == before


def test_bad_spec_is_one_line(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"targets": {"t": {"config": "x.yaml"}}, "sources": {"dense": []}}))
    assert main(["transfer-matrix", str(path)]) == 2
    assert "sources.dense is the baseline row" in capsys.readouterr().err
