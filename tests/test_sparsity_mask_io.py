"""Mask files: the bit-packed contract, strict loading, importers, and never unpickling."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn.utils import prune as tprune

from ticketlab.errors import TicketlabError
from ticketlab.sparsity import import_open_lth, import_torch_prune, load_any_mask, load_mask, save_mask

SHAPES = {"a.weight": (3, 5, 7), "b.weight": (13,), "c.weight": (1,), "d.weight": (2, 0, 3), "e.weight": (9, 9)}


def _mask(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {n: torch.rand(s, generator=g) < 0.5 for n, s in SHAPES.items()}


def test_round_trip_odd_sizes_and_contract_layout(tmp_path):
    mask = _mask()
    path = tmp_path / "mask.safetensors"
    save_mask(path, mask)
    back = load_mask(path, SHAPES)
    assert list(back) == list(SHAPES)
    for n in mask:
        assert back[n].dtype == torch.bool and torch.equal(back[n], mask[n])
    # the contract, read with nothing but safetensors + numpy
    raw = load_file(str(path))
    from safetensors import safe_open
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    assert meta["format"] == "ticketlab-mask/1" and meta["bitorder"] == "little"
    assert {k: tuple(v) for k, v in json.loads(meta["shapes"]).items()} == SHAPES
    for n, m in mask.items():
        expect = np.packbits(m.numpy().reshape(-1), bitorder="little")
        assert raw[n].dtype == torch.uint8 and raw[n].dim() == 1
        assert np.array_equal(raw[n].numpy(), expect)


def test_file_is_about_one_bit_per_weight(tmp_path):
    n = 1001 * 997
    path = tmp_path / "big.safetensors"
    save_mask(path, {"w": torch.rand(1001, 997) < 0.3})
    assert (n + 7) // 8 <= path.stat().st_size <= (n + 7) // 8 + 1024


def test_mismatch_lists_missing_unexpected_and_misshaped(tmp_path):
    path = tmp_path / "m.safetensors"
    save_mask(path, _mask())
    expected = {k: v for k, v in SHAPES.items() if k != "b.weight"}
    expected["a.weight"] = (3, 5, 8)
    expected["z.weight"] = (4,)
    with pytest.raises(TicketlabError) as e:
        load_mask(path, expected)
    msg = str(e.value)
    assert str(path) in msg and "\n" not in msg
    assert "missing 1: z.weight" in msg and "unexpected 1: b.weight" in msg
    assert "a.weight (3, 5, 7) != model (3, 5, 8)" in msg


def test_long_mismatch_lists_are_truncated(tmp_path):
    path = tmp_path / "m.safetensors"
    save_mask(path, {f"l{i}.weight": torch.ones(2, dtype=torch.bool) for i in range(30)})
    with pytest.raises(TicketlabError, match=r"unexpected 30: .*\(\+22 more\)"):
        load_mask(path, {})


@pytest.mark.parametrize("meta,match", [
    ({"format": "other/1", "bitorder": "little"}, "format"),
    ({"format": "ticketlab-mask/1", "bitorder": "big"}, "bitorder"),
    ({"format": "ticketlab-mask/1", "bitorder": "little", "shapes": "{not json"}, "shapes"),
    ({"format": "ticketlab-mask/1", "bitorder": "little", "shapes": json.dumps({"w": [-1]})}, "shapes"),
    ({"format": "ticketlab-mask/1", "bitorder": "little", "shapes": json.dumps({"w": [17]})}, "expected uint8"),
    ({"format": "ticketlab-mask/1", "bitorder": "little", "shapes": json.dumps({"x": [8]})}, "differ"),
])
def test_malformed_files_are_rejected(tmp_path, meta, match):
    path = tmp_path / "bad.safetensors"
    meta.setdefault("shapes", json.dumps({"w": [8]}))
    save_file({"w": torch.zeros(1, dtype=torch.uint8)}, str(path), metadata=meta)
    with pytest.raises(TicketlabError, match=match):
        load_mask(path)


def test_not_a_safetensors_file(tmp_path):
    path = tmp_path / "junk.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{garbage")
    with pytest.raises(TicketlabError, match="junk.safetensors"):
        load_mask(path)
    with pytest.raises(TicketlabError, match="not found"):
        load_mask(tmp_path / "nope.safetensors")


def test_import_torch_prune_state_dict(tmp_path):
    model = nn.Sequential(nn.Linear(4, 3), nn.Conv2d(3, 2, 1))
    tprune.l1_unstructured(model[0], "weight", amount=0.5)
    tprune.random_unstructured(model[1], "bias", amount=0.5)
    mask = import_torch_prune(model.state_dict())
    assert set(mask) == {"0.weight", "1.bias"}
    assert torch.equal(mask["0.weight"], model[0].weight_mask.bool())
    path = tmp_path / "pruned_model.pt"
    torch.save(model.state_dict(), path)
    back = load_any_mask(path)
    assert all(torch.equal(back[n], mask[n]) for n in mask)
    with pytest.raises(TicketlabError, match="_mask"):
        import_torch_prune({"0.weight": torch.ones(2)})


def test_import_open_lth(tmp_path):
    g = torch.Generator().manual_seed(0)
    lth = {"fc.weight": (torch.rand(4, 6, generator=g) < 0.5).int(), "conv.weight": torch.ones(2, 3, 3, 3)}
    path = tmp_path / "mask.pth"
    torch.save(lth, path)
    mask = import_open_lth(path)
    assert torch.equal(mask["fc.weight"], lth["fc.weight"].bool()) and bool(mask["conv.weight"].all())
    assert set(load_any_mask(path)) == set(lth)
    with pytest.raises(TicketlabError, match="conv.weight"):
        load_any_mask(path, {"fc.weight": (4, 6)})
    torch.save({"fc.weight": torch.full((3,), 0.5)}, path)
    with pytest.raises(TicketlabError, match="fc.weight.*0/1"):
        import_open_lth(path)
    torch.save([torch.ones(3)], path)
    with pytest.raises(TicketlabError, match="mask.pth"):
        import_open_lth(path)


def test_load_any_mask_reads_our_format_whatever_the_extension(tmp_path):
    path = tmp_path / "ticket.bin"
    save_mask(path, _mask(1))
    back = load_any_mask(path, SHAPES)
    assert all(torch.equal(back[n], _mask(1)[n]) for n in SHAPES)


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))  # would create the marker file when unpickled


@pytest.mark.parametrize("how", ["torch.save", "pickle"])
def test_malicious_pickle_is_refused_without_running_it(tmp_path, how):
    marker = tmp_path / "pwned"
    path = tmp_path / "mask.pth"
    payload = {"fc.weight": _Evil(str(marker))}
    if how == "torch.save":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))
    for load in (import_open_lth, load_any_mask):
        with pytest.raises(TicketlabError, match="mask.pth"):
            load(path)
    assert not marker.exists()
