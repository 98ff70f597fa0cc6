"""Files a user hands us never run code and never reach outside the dataset: no unrestricted
unpickling anywhere in the source, a booby-trapped .pth is refused before its payload runs, and a
COCO `file_name` cannot point outside the image root."""

from __future__ import annotations

import ast
import json
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ticketlab.config import DataConfig
from ticketlab.data import build_data
from ticketlab.data.bundle import BOXES
from ticketlab.errors import TicketlabError
from ticketlab.sparsity import load_any_mask

SRC = Path(__file__).resolve().parents[1] / "src" / "ticketlab"
CORPUS = Path(__file__).resolve().parent / "corpus"
ALLOWED_UNPICKLER = ("data/cifar.py", "_ArrayUnpickler")


def dotted(node: ast.AST) -> str:
    """'torch.load' for the expression torch.load, '' for anything that is not a dotted name."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = dotted(node.value)
        return f"{base}.{node.attr}" if base else ""
    return ""


def keyword_is(call: ast.Call, name: str, value: object) -> bool:
    return any(k.arg == name and isinstance(k.value, ast.Constant) and k.value.value is value for k in call.keywords)


def source_files() -> list[Path]:
    files = sorted(SRC.rglob("*.py"))
    assert len(files) > 20  # the scan really sees the package
    return files


# `ticketlab export --format torchscript` loads back the bytes it has just serialised itself (never a
# user's file) to check the exported module's outputs before writing it.
ALLOWED_CALLS = {("deploy/export.py", "torch.jit.load"),
                 ("yaml_file.py", "yaml.load")}  # with yaml_file.Loader, a SafeLoader (tested below)


def test_source_never_unpickles_unrestricted():
    problems, unpicklers = [], []
    for path in source_files():
        rel = path.relative_to(SRC).as_posix()
        tree = ast.parse(path.read_text(), filename=rel)
        calls = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
        for node in ast.walk(tree):
            where = f"{rel}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.ImportFrom) and node.module in ("pickle", "torch", "dill", "joblib"):
                names = {a.name for a in node.names}
                if names & {"load", "loads", "Unpickler", "*"}:
                    problems.append(f"{where}: from {node.module} import {sorted(names)}")
            if isinstance(node, ast.Import) and any(a.name in ("dill", "joblib", "cloudpickle") for a in node.names):
                problems.append(f"{where}: imports a pickle-based loader")
            if isinstance(node, ast.Attribute) and dotted(node) == "torch.load" and id(node) not in calls:
                problems.append(f"{where}: torch.load used other than as a direct call")
            if isinstance(node, ast.Call):
                name = dotted(node.func)
                if name == "torch.load" and not keyword_is(node, "weights_only", True):
                    problems.append(f"{where}: torch.load without weights_only=True")
                if name in ("pickle.load", "pickle.loads", "torch.jit.load", "yaml.load", "yaml.unsafe_load") \
                        and (rel, name) not in ALLOWED_CALLS:
                    problems.append(f"{where}: {name}")
                if name in ("np.load", "numpy.load") and not keyword_is(node, "allow_pickle", False):
                    problems.append(f"{where}: {name} without allow_pickle=False")
            if isinstance(node, ast.ClassDef) and "pickle.Unpickler" in {dotted(b) for b in node.bases}:
                methods = {n.name for n in node.body if isinstance(n, ast.FunctionDef)}
                unpicklers.append((rel, node.name, "find_class" in methods))
    assert problems == []
    assert unpicklers == [(*ALLOWED_UNPICKLER, True)]


def test_the_cifar_unpickler_refuses_other_globals(tmp_path):
    from ticketlab.data.cifar import read_batch

    batch = tmp_path / "data_batch_1"
    batch.write_bytes(pickle.dumps({"data": [1, 2], "labels": Path("x")}))  # a global outside the allowed set
    with pytest.raises(TicketlabError, match="refusing to load global pathlib"):
        read_batch(batch)


class Payload:
    """Unpickling this creates `marker`: what a booby-trapped checkpoint would do, harmlessly."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def evil_pth(tmp_path) -> tuple[Path, Path]:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"layer1.weight": Payload(marker), "layer1.weight_mask": torch.ones(3)}, path)
    # The payload is live: an unrestricted load runs it (which is exactly what must never happen).
    torch.load(path, weights_only=False).get("layer1.weight").close()
    assert marker.exists()
    marker.unlink()
    return path, marker


def one_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("ticketlab: error:")
    return lines[0]


def test_malicious_pth_as_model_weights_refused_by_the_cli(evil_pth, tmp_path):
    path, marker = evil_pth
    result = subprocess.run([sys.executable, "-m", "ticketlab", "find", "configs/digits_lenet.yaml",
                             "--set", f"model.weights={path}", "--out", str(tmp_path / "run")],
                            capture_output=True, text=True)
    line = one_line(result)
    assert f"model.weights={path}" in line and "never unpickled" in line
    assert not marker.exists()
    assert not (tmp_path / "run").exists()  # refused before the run dir was touched


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy-pickle"])
def test_malicious_pth_as_mask_refused(tmp_path, legacy):
    marker = tmp_path / "pwned"
    path = tmp_path / "mask.pth"
    torch.save({"layer1.weight": Payload(marker)}, path, _use_new_zipfile_serialization=not legacy)
    with pytest.raises(TicketlabError) as err:
        load_any_mask(path)
    assert "\n" not in str(err.value)
    assert str(err.value).startswith(f"{path}: not a plain PyTorch tensor file (refused to unpickle it")
    assert not marker.exists()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_raw_pickle_as_mask_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "mask.pth"
    path.write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(TicketlabError, match="refused to unpickle"):
        load_any_mask(path)
    assert not marker.exists()


@pytest.mark.parametrize("corpus_file", ["coco/file_name_dotdot.json", "coco/file_name_absolute.json",
                                         "coco/file_name_backslash.json"])
def test_coco_file_name_outside_the_image_root_rejected(tmp_path, corpus_file):
    shutil.copytree(CORPUS / "coco" / "images", tmp_path / "images")
    shutil.copy(CORPUS / corpus_file, tmp_path / "train.json")
    name = json.loads((tmp_path / "train.json").read_text())["images"][0]["file_name"]
    cfg = DataConfig(format="coco", root=str(tmp_path), train="train.json", val="train.json")
    with pytest.raises(TicketlabError) as err:
        build_data(cfg, frozenset({BOXES}))
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(f"{tmp_path / 'train.json'}: image id 1: 'file_name' {name!r} must be a path inside")


def test_the_yaml_loader_builds_plain_data_only():
    import yaml

    from ticketlab.yaml_file import Loader, safe_load

    assert issubclass(Loader, yaml.SafeLoader)
    assert safe_load("prune: {granularity: 2:4, rate: 0.5}") == {"prune": {"granularity": "2:4", "rate": 0.5}}
    with pytest.raises(yaml.constructor.ConstructorError):
        safe_load("!!python/object/apply:os.getcwd []")
