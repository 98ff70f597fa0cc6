"""Accuracy against measured latency: `deploy.latency` times deployed levels side by side, and
`ticketlab report` draws the headline metric against it for a study whose cells differ in
prune.granularity (and leaves the section out when they do not)."""

import csv
from pathlib import Path

import pytest
import yaml

from ticketlab.analysis.report import write_report
from ticketlab.cli import main
from ticketlab.deploy.latency import deployed_model, interleaved_medians, level_latency
from ticketlab.errors import TicketlabError

ROOT = Path(__file__).resolve().parents[1]
SET = ["train.duration=2it", "train.eval_every=2it", "train.checkpoint_every=2it", "train.tensorboard=false",
       "prune.levels=1", "prune.rate=0.5"]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("granularity")
    spec = root / "s.yaml"
    spec.write_text(yaml.safe_dump({"config": str(ROOT / "configs/digits_resnet20.yaml"), "set": SET,
                                    "grid": {"prune.granularity": ["weight", "channel"]}}))
    out = root / "study"
    assert main(["sweep", str(spec), "--out", str(out)]) == 0
    return out


def test_interleaved_rounds_rotate_and_call_each_runner_every_round():
    calls = []
    runners = {k: (lambda k=k: calls.append(k)) for k in "abc"}
    medians = interleaved_medians(runners, repeats=4, warmup=2)
    assert set(medians) == set("abc") and all(v >= 0 for v in medians.values())
    rounds = [calls[i:i + 3] for i in range(0, len(calls), 3)]
    assert rounds == [list("abc"), list("bca"), list("cab"), list("abc"), list("bca"), list("cab")]
    with pytest.raises(TicketlabError, match="repeats"):
        interleaved_medians(runners, repeats=0)


def test_a_channel_level_deploys_smaller_and_is_timed_with_the_others(study):
    weight = study / "cells" / "granularity=weight" / "level_01"
    channel = study / "cells" / "granularity=channel" / "level_01"
    assert weight.is_dir() and channel.is_dir()
    d = deployed_model(channel)
    kept, total = d.channels
    assert kept == total - round(0.5 * total)  # one global ranking: round(rate × alive units) removed
    measured = level_latency([weight, channel], repeats=2)
    assert measured[channel].macs < measured[weight].macs
    assert measured[channel].params < measured[weight].params
    assert all(r.seconds > 0 and r.runtime == "torch" for r in measured.values())


def test_report_draws_metric_against_latency_for_granularities(study, tmp_path):
    out = tmp_path / "report"
    assert main(["report", str(study), "--out", str(out)]) == 0
    assert (out / "metric_vs_latency.png").stat().st_size > 0
    with open(out / "latency_by_level.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted((r["granularity"], int(r["level"])) for r in rows) == \
        [("channel", 0), ("channel", 1), ("weight", 0), ("weight", 1)]
    assert all(float(r["latency ms"]) > 0 and r["metric"] == "accuracy" for r in rows)
    html = (out / "index.html").read_text()
    assert "accuracy vs latency" in html and "latency_by_level.csv" in html


def test_no_latency_section_when_granularity_is_the_same(study, tmp_path):
    one = study / "cells" / "granularity=channel"
    write_report([one], tmp_path / "r")
    assert not (tmp_path / "r" / "latency_by_level.csv").exists()
