"""Atomic writes leave the old or the new file, and safetensors files are byte-reproducible."""

import subprocess
import sys

import torch
from safetensors import safe_open

from ticketlab.atomic import atomic_save_safetensors, atomic_write_text, remove_stale_temporaries

WRITE = """
import sys, torch
from ticketlab.atomic import atomic_save_safetensors
atomic_save_safetensors(sys.argv[1], {"b": torch.arange(5.0), "a": torch.ones(3, dtype=torch.uint8)},
                        {"format": "x", "bitorder": "little", "shapes": "{}", "zeta": "1", "alpha": "2"})
"""


def test_same_content_same_bytes_across_processes(tmp_path):
    paths = [tmp_path / f"{i}.safetensors" for i in range(4)]
    for p in paths:
        subprocess.run([sys.executable, "-c", WRITE, str(p)], check=True)
    contents = {p.read_bytes() for p in paths}
    assert len(contents) == 1  # the writer's metadata order varies per process; ours does not
    with safe_open(str(paths[0]), "pt") as f:
        assert f.metadata() == {"format": "x", "bitorder": "little", "shapes": "{}", "zeta": "1", "alpha": "2"}
        assert torch.equal(f.get_tensor("b"), torch.arange(5.0))


def test_failed_write_keeps_old_file_and_temporaries_are_cleaned(tmp_path):
    target = tmp_path / "metrics.json"
    atomic_write_text(target, "old")
    try:
        atomic_save_safetensors(target, {"x": object()})  # not a tensor: fails before the rename
    except Exception:
        pass
    assert target.read_text() == "old"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
    (tmp_path / ".tmp-final.safetensors.abc").write_bytes(b"half")
    assert remove_stale_temporaries(tmp_path) == 1
    assert target.read_text() == "old"
