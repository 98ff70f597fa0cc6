"""A 2:4 ticket exported for PyTorch's semi-structured sparse kernels: the file's layout (a plain
state_dict that loads strictly, metadata naming the linear layers with the pattern and a kernel
shape), dense and unchanged on the CPU; converted only where the kernels exist (CUDA 8.0+)."""

import json

import numpy as np
import pytest
import safetensors
import torch
from safetensors.torch import load_file
from torch import nn

from ticketlab.cli import main
from ticketlab.config import load_config
from ticketlab.deploy import load_ticket
from ticketlab.deploy.semi_structured import (META_KEY, convertible_layers, has_pattern, kernels_available,
                                              load_semi_structured, read_layers, to_semi_structured_)
from ticketlab.errors import TicketlabError
from ticketlab.lottery.imp import run_imp
from ticketlab.registry import EXPORT_FORMATS

# Conv-2 at full width on the 8×8 digits: hidden layers 1024 → 256 → 256 (kernel shapes), fc 256 → 10 (not)
SET = ["model.family=conv2", "model.width=1", "data.augment=false", "train.duration=3it", "train.eval_every=3it",
       "train.checkpoint_every=3it", "train.batch_size=16", "prune.granularity='2:4'", "prune.levels=1",
       "prune.exclude=[stem]"]


@pytest.fixture(scope="module")
def nm_level(tmp_path_factory):
    out = tmp_path_factory.mktemp("nm") / "run"
    run_imp(load_config("configs/digits_lenet.yaml", SET), out, log=lambda s: None)
    return out / "level_01"


def test_pattern_check_is_per_group_of_four_along_the_input():
    w = torch.tensor([[1.0, 0, 2, 0, 0, 0, 0, 3], [0, 1, 1, 0, 1, 1, 0, 0]])
    assert has_pattern(w)
    w[0, 1] = 5.0  # three nonzeros in the first group of row 0
    assert not has_pattern(w)
    assert not has_pattern(torch.zeros(2, 6))  # 6 inputs cannot be grouped by 4


def test_export_layout_and_dense_cpu_run(nm_level, tmp_path):
    out = tmp_path / "t.safetensors"
    assert main(["export", str(nm_level), "--format", "semi_structured", "--out", str(out)]) == 0
    with safetensors.safe_open(str(out), framework="pt") as f:
        meta = json.loads(f.metadata()[META_KEY])
    assert meta["pattern"] == "2:4"
    assert meta["layers"] == read_layers(out) == ["hidden.0", "hidden.2"]
    assert "fc" in meta["dense"] and "not a multiple" in meta["dense"]["fc"]
    state = load_file(out)
    for layer in meta["layers"]:  # at most 2 nonzeros in each group of 4 consecutive inputs, counted here
        w = state[f"{layer}.weight"].numpy()
        assert (np.count_nonzero(w.reshape(w.shape[0], -1, 4), axis=2) <= 2).all()
        assert np.count_nonzero(w) <= w.size // 2
    ticket = load_ticket(nm_level)
    fresh = ticket.experiment.fresh_model(seed=1)
    assert load_semi_structured(fresh, out, "cpu") == []  # no kernels on a CPU: dense, as exported
    with torch.no_grad():
        torch.testing.assert_close(fresh(ticket.example), ticket.model(ticket.example), rtol=1e-5, atol=1e-5)


def test_the_format_declares_what_it_takes_and_export_refuses_the_rest(nm_level, tmp_path, capsys):
    declared = EXPORT_FORMATS.get("semi_structured")
    assert declared.granularities == ("2:4", "1:4") and declared.refusal("2:4") is None
    assert "not prune.granularity channel" in declared.refusal("channel")
    for flag in ("--compact", "--csr-box-head"):  # the file keeps the ticket's own layers
        out = tmp_path / f"t{flag}.safetensors"
        assert main(["export", str(nm_level), "--format", "semi_structured", flag, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert f"{flag} with --format semi_structured" in err and len(err.strip().splitlines()) == 1, err
        assert not out.exists()


def test_a_weight_ticket_is_refused_with_the_reason(tmp_path):
    model = nn.Sequential(nn.Linear(64, 32))
    assert convertible_layers(model) == {"0": "weight is not 2:4"}
    with pytest.raises(TicketlabError, match="no linear layer can use the 2:4 kernels"):
        from ticketlab.deploy.semi_structured import file_metadata
        file_metadata(model)


def test_conversion_needs_the_kernels():
    lin = nn.Linear(64, 32)
    with torch.no_grad():
        lin.weight.view(32, 16, 4)[:, :, :2] = 0
    if kernels_available(torch.device("cpu")):
        pytest.fail("the CPU has no semi-structured kernels")
    with pytest.raises(TicketlabError, match="CUDA device of compute capability 8.0"):
        to_semi_structured_(nn.Sequential(lin), ["0"])


@pytest.mark.skipif(not (torch.cuda.is_available() and kernels_available(torch.device("cuda"))),
                    reason="needs a CUDA GPU of compute capability 8.0+")
def test_cuda_conversion_matches_the_dense_half_model(nm_level, tmp_path):
    out = tmp_path / "t.safetensors"
    assert main(["export", str(nm_level), "--format", "semi_structured", "--out", str(out)]) == 0
    ticket = load_ticket(nm_level)
    sparse = ticket.experiment.fresh_model(seed=1)
    assert load_semi_structured(sparse, out, "cuda") == ["hidden.0", "hidden.2"]
    dense = ticket.experiment.fresh_model(seed=1)
    dense.load_state_dict(load_file(out))
    dense = dense.cuda().half().eval()
    x = ticket.example.cuda().half().expand(32, -1, -1, -1).contiguous()
    with torch.no_grad():
        torch.testing.assert_close(sparse(x), dense(x), rtol=1e-2, atol=1e-2)
