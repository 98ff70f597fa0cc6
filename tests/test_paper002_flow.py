"""scripts/paper002_cpu.py --quick: paper 002's whole flow, checked on what its target runs wrote.

The table must hold every source × target; each transferred cell must train m_P ⊙ θ_p (the pre-training
mask on the pre-trained weights, pruned weights exactly 0 after fine-tuning); and the reported network
sparsity must be the pruned count over all of the model's parameters, counted here with torch.
"""

import csv
import json
import re
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ticketlab.config import load_config
from ticketlab.lottery.matrix import slug
from ticketlab.sparsity import load_mask
from ticketlab.tasks import build_task_data, build_task_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import paper002_cpu  # noqa: E402

pytestmark = pytest.mark.slow
SEEDS = (0, 1)
TRANSFERRED = ("m_P supervised", "m_P SimCLR", "m_T")
ROWS = ("dense", *TRANSFERRED, "dense SimCLR")


@pytest.fixture(scope="module")
def flow(tmp_path_factory):
    out = tmp_path_factory.mktemp("paper002")
    table = paper002_cpu.main(["--out", str(out), "--quick", "--seeds", *map(str, SEEDS)])
    return out, table


def cells(out: Path, rows=TRANSFERRED):
    for row in rows:
        for target in paper002_cpu.TARGETS:
            for seed in SEEDS:
                yield row, target, out / "matrix" / slug(row) / target / f"seed_{seed}" / "level_00"


def resnet_key(name: str) -> str:
    """`layer1.0.conv1.weight` whatever the ResNet sits under (classifier, SimCLR `backbone.`, R-CNN);
    "" for tensors outside the ResNet's stages."""
    found = re.search(r"(?:^|\.)(layer\d\..*)", name)
    return found.group(1) if found else ""


def test_table_has_every_source_and_target(flow):
    out, table = flow
    rows = list(csv.DictReader(open(out / "matrix" / "matrix.csv")))
    assert {(r["source"], r["target"]) for r in rows} == {(s, t) for s in ROWS for t in paper002_cpu.TARGETS}
    assert all(int(r["seeds"]) == len(SEEDS) for r in rows)
    lines = table.read_text().splitlines()
    for source in ROWS:
        [line] = [x for x in lines if x.startswith(f"| {source} |")]
        assert line.count("±") == len(paper002_cpu.TARGETS)


def test_targets_train_the_pretraining_mask_on_the_pretrained_weights(flow):
    out, _ = flow
    theta = {"m_P supervised": "supervised", "m_P SimCLR": "simclr", "m_T": "supervised"}
    for row, target, level in cells(out):
        source = Path(json.loads((level.parent / "init.json").read_text())["transfer"]["source"])
        expected = out / "imp" / ("supervised" if row == "m_P supervised" else
                                  "simclr" if row == "m_P SimCLR" else target)
        assert source.parent == expected
        source_mask = {resnet_key(k): m for k, m in load_mask(source / "mask.safetensors").items()}
        theta_p = {resnet_key(k): v for k, v in load_file(out / "pretrain" / theta[row] / "level_00" /
                                                          "final.safetensors").items()}
        start, final = load_file(level / "rewind.safetensors"), load_file(level / "final.safetensors")
        backbone = [k for k in final if resnet_key(k) in source_mask]
        assert len(backbone) == len(source_mask)
        for key in backbone:
            keep = source_mask[resnet_key(key)]
            assert not keep.all()
            assert torch.equal(start[key], theta_p[resnet_key(key)] * keep)  # m_P ⊙ θ_p
            assert torch.count_nonzero(final[key][~keep]) == 0
            assert torch.count_nonzero(final[key][keep]) > 0


def test_network_sparsity_is_pruned_over_all_parameters(flow):
    out, _ = flow
    for _, _, level in cells(out, ROWS):
        cfg = load_config(level.parent / "config.yaml")
        model = build_task_model(cfg, build_task_data(cfg)).module
        total = sum(p.numel() for p in model.parameters())
        pruned = sum(int((~m).sum()) for m in load_mask(level / "mask.safetensors").values())
        metrics = json.loads((level / "metrics.json").read_text())
        assert metrics["sparsity_network"] == pytest.approx(pruned / total, abs=1e-9)
