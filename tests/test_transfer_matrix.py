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


@pytest.fixture(scope="module")
def run_source_matrix(tmp_path_factory):
    """A whole IMP run as a source (a row per level), judged against the dense model from the same θ_p."""
    from ticketlab.config import load_config
    from ticketlab.lottery.imp import run_imp

    root = tmp_path_factory.mktemp("run_source")
    run_imp(load_config("configs/digits_lenet.yaml", ["train.duration=1ep", "prune.levels=2"]), root / "src",
            log=lambda s: None)
    theta = root / "src" / "level_00" / "final.safetensors"
    target = ["train.duration=2it", "train.eval_every=2it", "prune.levels=0"]
    spec = {"seeds": [0, 1],
            "targets": {"digits": {"config": "configs/digits_lenet.yaml", "set": target}},
            "baselines": {"dense θ_p": [f"model.weights={theta}"]},
            "sources": {"m_P": {"run": str(root / "src"), "baseline": "dense θ_p",
                                "set": [f"model.weights={theta}", "init.mode=mask", "init.map=shared"]}}}
    path = root / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, allow_unicode=True))
    out = root / "out"
    assert main(["transfer-matrix", str(path), "--out", str(out)]) == 0
    return root, out


def test_run_source_rows_each_level_against_its_own_baseline(run_source_matrix):
    root, out = run_source_matrix
    rows = {r["source"]: r for r in csv.DictReader(open(out / "matrix.csv", encoding="utf-8"))}
    assert list(rows) == ["dense", "dense θ_p", "m_P L01", "m_P L02"]
    assert rows["dense θ_p"]["baseline"] == "dense" and rows["m_P L02"]["baseline"] == "dense θ_p"

    from ticketlab.lottery.matrix import slug

    def accs(row):
        return [json.loads((out / slug(row) / "digits" / f"seed_{s}" / "level_00" / "metrics.json").read_text())["accuracy"]
                for s in (0, 1)]

    base = accs("dense θ_p")
    for level in (1, 2):
        r = rows[f"m_P L{level:02d}"]
        init = json.loads((out / f"m_P_L{level:02d}" / "digits" / "seed_0" / "init.json").read_text())
        assert init["transfer"]["source"] == str(root / "src" / f"level_{level:02d}")
        source = json.loads((root / "src" / f"level_{level:02d}" / "metrics.json").read_text())
        assert float(r["source_sparsity"]) == pytest.approx(source["sparsity_scope"])
        assert r["matching"] == str(bool(np.mean(accs(f"m_P L{level:02d}")) >= np.mean(base) - np.std(base, ddof=1)))
    universal = list(csv.DictReader(open(out / "universal.csv", encoding="utf-8")))
    matching = [lv for lv in (1, 2) if rows[f"m_P L{lv:02d}"]["matching"] == "True"]
    assert universal[0]["universal_levels"] == " ".join(map(str, matching))
    assert (out / "transfer_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_universal_stops_at_the_first_level_failing_on_some_target():
    """Paper 002 §4 A1: "transfers by sparsity X" claims every level up to X; a middle level failing
    on one target ends the universal range even when a sparser level matches everywhere again."""
    from ticketlab.lottery.matrix import universal_levels, universal_note
    from ticketlab.lottery.matrix_spec import MatrixSpec, RunSource, Target

    spec = MatrixSpec(targets={"a": Target("x"), "b c": Target("x")}, seeds=[0],
                      sources={"m": RunSource("r"), "single": ["k=v"]})
    verdicts = {(1, "a"): True, (1, "b c"): True, (2, "a"): True, (2, "b c"): False, (3, "a"): True,
                (3, "b c"): True, (4, "a"): False, (4, "b c"): True}
    rows = [{"run_source": "m", "source_level": lv, "target": t, "matching": ok, "source_sparsity": 1 - 0.8 ** lv}
            for (lv, t), ok in verdicts.items()]
    [u] = universal_levels(rows, spec)
    assert u["universal_levels"] == "1 3"   # each level on its own: 2 fails "b c", 4 fails a
    assert (u["sparsest_universal_level"], u["first_failing_level"], u["first_failing_targets"]) == (1, 2, "b c")
    assert u["sparsest_universal_sparsity"] == pytest.approx(0.2)
    assert universal_note(u) == ("- m (vs dense): universal at every level up to 1 (20.00% of the source's scope "
                                 "pruned); level 2 fails on b c; each level's own verdict, universal at: 1 3")
    rows[0]["matching"] = False                 # level 1 fails a: universal at no level
    [u] = universal_levels(rows, spec)
    assert (u["sparsest_universal_level"], u["sparsest_universal_sparsity"], u["first_failing_targets"]) == (None, None, "a")
    assert universal_note(u).startswith("- m (vs dense): universal at no level (level 1 fails on a)")
    for r in rows:
        r["matching"] = True
    rows[0]["matching"] = False                 # level 1 fails both: every failing target is named
    rows[1]["matching"] = False
    assert universal_levels(rows, spec)[0]["first_failing_targets"] == "a, b c"
    rows[0]["matching"] = rows[1]["matching"] = True
    del rows[3]                                 # level 2 has no cell on "b c" (not finished): it fails there
    [u] = universal_levels(rows, spec)
    assert (u["universal_levels"], u["sparsest_universal_level"], u["first_failing_targets"]) == ("1 3 4", 1, "b c")


def test_run_source_spec_errors_are_one_line(tmp_path, capsys):
    bad = {"targets": {"t": {"config": "x.yaml"}}}
    for sources, message in [
        ({"m": {"run": str(tmp_path), "levels": [0]}}, "sources.m.levels: expected all or a list of levels >= 1"),
        ({"m": {"run": str(tmp_path), "baseline": "θ"}}, "sources.m.baseline: 'θ' is not 'dense'"),
        ({"m": {"run": str(tmp_path), "runs": 1}}, "unknown key(s) runs"),
        ({"m": {"run": str(tmp_path)}}, "not a ticketlab run directory"),
    ]:
        path = tmp_path / "spec.yaml"
        path.write_text(yaml.safe_dump({**bad, "sources": sources}, allow_unicode=True))
        assert main(["transfer-matrix", str(path), "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1


def test_report_universal_table_shows_the_range_and_where_it_ends(tmp_path):
    """What the report's "universal verdict" table shows, read back from universal.csv as written."""
    from ticketlab.analysis.matrix_sections import MatrixDir, _csv as read_csv, _universal_table
    from ticketlab.lottery.matrix import _csv as write_csv, universal_levels
    from ticketlab.lottery.matrix_spec import MatrixSpec, RunSource, Target

    spec = MatrixSpec(targets={"a": Target("x"), "b c": Target("x")}, seeds=[0],
                      sources={"broken": RunSource("r"), "whole": RunSource("r")})
    verdicts = {1: (True, True), 2: (True, False), 3: (True, True)}
    rows = [{"run_source": src, "source_level": lv, "target": t, "matching": ok or src == "whole",
             "source_sparsity": 1 - 0.5 ** lv}
            for src in ("broken", "whole") for lv, oks in verdicts.items() for t, ok in zip(("a", "b c"), oks)]
    (tmp_path / "universal.csv").write_text(write_csv(universal_levels(rows, spec)))
    header, body = _universal_table(MatrixDir(tmp_path, None, [], read_csv(tmp_path / "universal.csv")))
    table = [dict(zip(header, line)) for line in body]
    assert [(t["universal levels"], t["universal up to level"], t["its scope sparsity %"],
             t["first failing level (targets)"]) for t in table] == [("1 3", "1", 50.0, "2 (b c)"),
                                                                     ("1 2 3", "3", 87.5, "—")]


def test_a_target_with_its_own_seeds_runs_and_averages_only_those(tmp_path):
    """Paper 001 ran COCO once and VOC over 5 runs: `targets.<name>.seeds` overrides the spec's
    `seeds:` for that column only, in the cells on disk, matrix.csv, columns.csv and the report."""
    import html

    fast = ["model.family=cifar_resnet20", "model.width=0.25", "train.duration=2it", "train.eval_every=2it",
            "train.checkpoint_every=2it", "prune.levels=0"]
    spec = {"seeds": [0], "paper": "test: per-target seeds",
            "targets": {"twice": {"config": "configs/digits_lenet.yaml", "set": fast, "seeds": [0, 1],
                                  "columns": ["accuracy"]},
                        "once": {"config": "configs/digits_lenet.yaml", "set": fast + ["train.lr=0.05"],
                                 "columns": ["accuracy"]}},
            "sources": {"magnitude 50%": ["init.mode=magnitude", "init.sparsity=0.5"]}}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    out = tmp_path / "out"
    assert main(["transfer-matrix", str(path), "--out", str(out)]) == 0
    cells = sorted(str(p.parent.relative_to(out)) for p in out.glob("*/*/seed_*/config.yaml"))
    assert cells == ["dense/once/seed_0", "dense/twice/seed_0", "dense/twice/seed_1",
                     "magnitude_50/once/seed_0", "magnitude_50/twice/seed_0", "magnitude_50/twice/seed_1"]

    def accs(row, target):
        return [json.loads(p.read_text())["accuracy"]
                for p in sorted((out / row / target).glob("seed_*/level_00/metrics.json"))]

    rows = {(r["source"], r["target"]): r for r in csv.DictReader(open(out / "matrix.csv"))}
    columns = {(r["source"], r["target"]): r for r in csv.DictReader(open(out / "columns.csv"))}
    for (source, target), r in rows.items():
        values = accs("dense" if source == "dense" else "magnitude_50", target)
        assert int(r["seeds"]) == int(columns[(source, target)]["seeds"]) == len(values) == (2 if target == "twice" else 1)
        std = np.std(values, ddof=1) if len(values) > 1 else 0.0
        for table in (r, columns[(source, target)]):
            assert float(table["mean"]) == pytest.approx(np.mean(values))
            assert float(table["std"]) == pytest.approx(std)
    dense = accs("dense", "twice")
    ticket = np.mean(accs("magnitude_50", "twice")) >= np.mean(dense) - np.std(dense, ddof=1)
    assert rows[("magnitude 50%", "twice")]["matching"] == str(bool(ticket))
    assert json.loads((out / "matrix.json").read_text())["seeds"] == {"twice": [0, 1], "once": [0]}

    assert main(["report", str(out), "--out", str(tmp_path / "report")]) == 0
    page = html.unescape((tmp_path / "report" / "index.html").read_text())
    twice = f"{np.mean(dense):.4f} (±{np.std(dense, ddof=1):.4f})"
    assert twice in page and f"{accs('dense', 'once')[0]:.4f}" in page
    assert "mean over each target's seeds (twice 2, once 1)" in page


@pytest.mark.parametrize("seeds", [[], [0, 0], ["a"], 3, [True]])
def test_bad_target_seeds_are_one_line_naming_file_and_key(tmp_path, capsys, seeds):
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump({"targets": {"voc": {"config": "configs/digits_lenet.yaml", "seeds": seeds}},
                                    "sources": {"m": ["init.mode=mask"]}}))
    assert main(["transfer-matrix", str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{path}: targets.voc.seeds: expected a non-empty list" in err
