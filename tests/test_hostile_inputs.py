"""Malformed inputs through the real command line: each ends in exit status 2 and ONE stderr line
`ticketlab: error: …` that names the file (and the key or annotation id), never a traceback.

The inputs are files under `tests/corpus/` (configs, COCO annotation files, masks, pretrained
weights), each handed to `python -m ticketlab find` the way a user would: as the config, through
`--set data.root=… data.train=…`, through `--set model.weights=…`, or as the mask of a finished
level that a resumed run prunes from. A subprocess costs seconds of Python + torch start-up, so the
first case of each kind of input runs as a real subprocess (the process boundary: nothing but the
line reaches stderr, from imports to exit) and the others (`in_process`, the default) call the same
`cli.main` inside the test process, where a traceback would fail the test as the exception itself.
Cases marked "was a traceback" are regressions of bugs this corpus found.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from ticketlab.cli import main
from ticketlab.config import dump_config, load_config

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "tests" / "corpus"
DIGITS = ["train.duration=1ep", "prune.levels=1"]  # a digits run small enough that no case can train long


@dataclass(frozen=True)
class Case:
    file: str  # under tests/corpus/
    fragments: tuple[str, ...]  # besides the file's path, the error line must contain these
    names_file: bool = True  # False: a config value checked after loading names its key, not the file
    in_process: bool = True  # False: run as `python -m ticketlab` in a subprocess


CONFIGS = [
    Case("configs/unknown_key.yaml", ("unknown config key 'train.lrr'", "did you mean 'train.lr'"),
         in_process=False),
    Case("configs/wrong_type.yaml", ("config key train.batch_size: expected an integer", "sixty-four")),
    Case("configs/bad_yaml.yaml", ("not valid YAML at line",)),
    Case("configs/top_level_list.yaml", ("expected a mapping of config keys at the top level",)),
    Case("configs/list_for_section.yaml", ("config key train: expected a mapping of keys",)),
    Case("configs/bad_steps.yaml", ("config key train.duration: expected a step count", "'30 epochs'")),
    Case("configs/unknown_strategy.yaml", ("config key prune.strategy: 'magnitude' is not one of global",)),
    Case("configs/negative_rate.yaml", ("prune.rate: expected a fraction in (0, 1), got -0.2",), names_file=False),
    # was a traceback (ZeroDivisionError)
    Case("configs/zero_batch_size.yaml", ("train.batch_size: expected 1 or more, got 0",), names_file=False),
    Case("configs/not_utf8.yaml", ("not a YAML config (not UTF-8 text)",)),  # was a traceback (UnicodeDecodeError)
    Case("configs/bool_for_number.yaml", ("config key train.lr: expected a number, got True",)),
    # was a traceback (RecursionError)
    Case("configs/deeply_nested.yaml", ("not a usable config (nested too deeply)",)),
]
COCO = [
    Case("coco/box_outside.json", ("annotation id 1: 'bbox' [20, 20, 30, 30] lies outside image id 1",),
         in_process=False),
    Case("coco/negative_width.json", ("annotation id 1: 'bbox' [4, 4, -5, 10] has a negative width",)),
    Case("coco/unknown_category.json", ("annotation id 1: 'category_id' 7 is not one of the categories [1]",)),
    Case("coco/keypoint_count_mismatch.json", ("annotation id 1: 'keypoints' has 6 numbers", "expected 9")),
    Case("coco/missing_image_file.json", ("image id 1: image file", "missing.png not found")),
    Case("coco/duplicate_image_id.json", ("image id 1: appears twice in 'images'",)),
    Case("coco/not_json.json", ("not valid JSON (line 1, column 1",)),
    Case("coco/truncated.json", ("not valid JSON",)),
    Case("coco/missing_images_key.json", ("expected a list under 'images'",)),
    Case("coco/annotation_id_zero.json", ("annotation id 0: id 0 is not allowed",)),
    # was accepted, then a traceback (ValueError) at the first training step
    Case("coco/area_not_a_number.json", ("annotation id 1: 'area' must be a non-negative number, got 'big'",)),
    # was a traceback (RecursionError)
    Case("coco/deeply_nested.json", ("not valid COCO JSON (nested too deeply)",)),
    # were accepted, then decoded into uninitialised memory / a crash inside the mask API
    Case("coco/rle_runs_short.json", ("annotation id 1: RLE 'counts' runs add up to 150 pixels",
                                      "has 32×32 = 1024")),
    Case("coco/rle_bad_string.json", ("annotation id 1: RLE 'counts' is not a compressed COCO RLE string",)),
]
MASKS = [
    Case("masks/truncated.safetensors", ("not a readable safetensors mask file",), in_process=False),
    Case("masks/wrong_format.safetensors", ("metadata 'format' is 'ticketlab-mask/2', expected 'ticketlab-mask/1'",)),
    Case("masks/wrong_shapes.safetensors", ("mask does not fit the model", "missing 1: fc.weight",
                                            "layer1.weight (10, 64) != model (300, 64)")),
]
WEIGHTS = [
    Case("weights/truncated.safetensors", ("not a readable safetensors file",), in_process=False),
    Case("weights/not_a_checkpoint.pth", ("not a readable torch file",)),
    Case("weights/wrong_shapes.safetensors", ("does not fit the model", "unexpected: layer9.weight",
                                              "layer1.weight: file (3, 64) vs model (300, 64)")),
]


@dataclass(frozen=True)
class Result:
    returncode: int
    stderr: str


def run_find(case: Case, capsys, config: str | Path, out: Path, *sets: str) -> Result:
    args = ["find", str(config), "--out", str(out)]
    for s in sets:
        args += ["--set", s]
    if case.in_process:
        capsys.readouterr()
        returncode = main(args)
        return Result(returncode, capsys.readouterr().err)
    done = subprocess.run([sys.executable, "-m", "ticketlab", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=300)
    return Result(done.returncode, done.stderr)


def check(result: Result, named_file: Path, case: Case) -> None:
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith("ticketlab: error: "), line
    if case.names_file:
        assert str(named_file) in line, line
    for fragment in case.fragments:
        assert fragment in line, line


def ids(cases: list[Case]) -> list[str]:
    return [c.file for c in cases]


def test_the_corpus_is_all_here():
    cases = CONFIGS + COCO + MASKS + WEIGHTS
    listed = {c.file for c in cases}
    assert all((CORPUS / f).is_file() for f in listed)
    assert len(listed) >= 20
    for kind in (CONFIGS, COCO, MASKS, WEIGHTS):  # one real process per kind: each costs a Python + torch start-up
        assert not kind[0].in_process and all(c.in_process for c in kind[1:])


@pytest.mark.parametrize("case", CONFIGS, ids=ids(CONFIGS))
def test_malformed_config(case, tmp_path, capsys):
    config = CORPUS / case.file
    result = run_find(case, capsys, config, tmp_path / "run")
    check(result, config, case)
    assert not (tmp_path / "run").exists()  # nothing is written for a config that does not load


@pytest.mark.parametrize("case", COCO, ids=ids(COCO))
def test_malformed_coco_annotations(case, tmp_path, capsys):
    ann = CORPUS / case.file
    task = "keypoints" if "keypoint" in case.file else "detection"
    family = {"keypoints": "keypointrcnn", "detection": "fasterrcnn"}[task]
    result = run_find(case, capsys, REPO / "configs/synth_fasterrcnn_lite.yaml", tmp_path / "run",
                      f"task={task}", f"model.family={family}", f"data.root={ann.parent}",
                      f"data.train={ann.name}", f"data.val={ann.name}")
    check(result, ann, case)


@pytest.fixture(scope="module")
def finished_level0(tmp_path_factory) -> Path:
    """A run dir whose level 0 counts as finished, so `find` goes on to prune from its mask."""
    run = tmp_path_factory.mktemp("masks") / "template"
    (run / "level_00").mkdir(parents=True)
    (run / "config.yaml").write_text(dump_config(load_config(REPO / "configs/digits_lenet.yaml", DIGITS)))
    (run / "level_00" / "metrics.json").write_text(json.dumps({"level": 0}))
    return run


@pytest.mark.parametrize("case", MASKS, ids=ids(MASKS))
def test_malformed_mask_of_a_finished_level(case, finished_level0, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(finished_level0, run)
    mask = run / "level_00" / "mask.safetensors"
    shutil.copy(CORPUS / case.file, mask)
    result = run_find(case, capsys, REPO / "configs/digits_lenet.yaml", run, *DIGITS)
    check(result, mask, case)
    assert not (run / ".lock").exists()  # released on the way out of the error
    assert not (run / "level_01").exists()


@pytest.mark.parametrize("case", WEIGHTS, ids=ids(WEIGHTS))
def test_malformed_pretrained_weights(case, tmp_path, capsys):
    weights = CORPUS / case.file
    result = run_find(case, capsys, REPO / "configs/digits_lenet.yaml", tmp_path / "run", *DIGITS,
                      f"model.weights={weights}")
    check(result, weights, case)
    assert f"model.weights={weights}" in result.stderr
