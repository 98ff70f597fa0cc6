"""Early-bird tickets on the real digits data: the draws are IMP's level-1 pruning of the dense weights
at that step (checked against torch.nn.utils.prune on a separate, shorter dense run), the record's IoUs
equal set arithmetic on the mask files, the automatic mode really ends dense training where the
detector fires, a branch retrains from an early mask, and the report's Fig. 2f table is each draw's
mean ± std over the seeds' records."""

import csv
import itertools
import json
import statistics

import pytest
import torch
import torch.nn.utils.prune as tprune
from safetensors.torch import load_file

from ticketlab.analysis.early_bird import early_bird_sections
from ticketlab.analysis.runs import load_runs
from ticketlab.config import load_config
from ticketlab.errors import TicketlabError
from ticketlab.lottery.branches import run_branch
from ticketlab.lottery.early_bird import draw_steps, fired_index
from ticketlab.lottery.imp import run_imp
from ticketlab.sparsity import load_mask
from ticketlab.tasks import build_task_data, build_task_model

FRACTIONS = "prune.early_bird=[0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9]"
FAST = ["train.duration=4ep", "train.eval_every=1ep", "train.checkpoint_every=1ep", "prune.levels=1", FRACTIONS]
TOTAL = 88  # 4 epochs of ceil(1347 / 64) = 22 steps (digits: 1797 images, 25% held out)


def config(*extra):
    return load_config("configs/digits_lenet.yaml", [*FAST, *extra])


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    out = tmp_path_factory.mktemp("eb") / "full"
    run_imp(config(), out, log=lambda s: None)
    return out


@pytest.fixture(scope="module")
def auto(tmp_path_factory):
    out = tmp_path_factory.mktemp("eb") / "auto"
    run_imp(config("prune.early_bird_stop=true", "prune.early_bird_threshold=0.04"), out, log=lambda s: None)
    return out


def record(run):
    return json.loads((run / "level_00" / "early_bird.json").read_text())


def jaccard(a, b):
    names = list(a)
    x = torch.cat([a[n].flatten() for n in names])
    y = torch.cat([b[n].flatten() for n in names])
    return ((x & y).sum() / (x | y).sum()).item()


def test_fired_index_is_the_first_window_of_patience_stable_draws():
    for distances in itertools.product([None, 0.01, 0.5], repeat=5):
        for patience in (1, 2, 3):
            windows = [i for i in range(len(distances)) if i + 1 >= patience and all(
                d is not None and d < 0.1 for d in distances[i + 1 - patience:i + 1])]
            assert fired_index(distances, 0.1, patience) == (windows[0] if windows else None)


def test_draw_steps_and_bad_fractions():
    assert draw_steps([0.5, 0.1, 0.5], 88) == [9, 44]
    with pytest.raises(TicketlabError, match="prune.early_bird"):
        draw_steps([1.0], 88)


def test_draws_cover_training_and_the_last_is_level_1s_mask(full):
    rec = record(full)
    steps = [d["step"] for d in rec["draws"]]
    assert steps == [round(f * TOTAL) for f in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)] + [TOTAL]
    assert rec["final_step"] == TOTAL and rec["steps_saved"] == 0 and not rec["stop"]
    masks = [load_mask(full / "level_00" / d["mask"]) for d in rec["draws"]]
    level1 = load_mask(full / "level_01" / "mask.safetensors")
    assert all(torch.equal(masks[-1][n], level1[n]) for n in level1)
    for d, m in zip(rec["draws"], masks):  # IoUs are set arithmetic on the files
        assert d["iou_with_final"] == pytest.approx(jaccard(m, level1))
        assert d["pruned_iou_with_final"] == pytest.approx(
            jaccard({n: ~t for n, t in m.items()}, {n: ~t for n, t in level1.items()}))
    for prev, d, m in zip(masks, rec["draws"][1:], masks[1:]):
        assert d["distance_to_previous"] == pytest.approx(1 - jaccard(prev, m))
    assert rec["draws"][0]["iou_with_final"] < 1.0


def test_a_draw_is_torchs_global_magnitude_pruning_of_the_weights_at_that_step(full, tmp_path):
    step = record(full)["draws"][2]["step"]
    short = tmp_path / "short"  # the same dense run, stopped at that step
    run_imp(load_config("configs/digits_lenet.yaml", ["train.duration=%dit" % step, "train.eval_every=1ep",
                                                       "prune.levels=0"]), short, log=lambda s: None)
    state = load_file(str(short / "level_00" / "final.safetensors"))
    cfg = load_config("configs/digits_lenet.yaml")
    model = build_task_model(cfg, build_task_data(cfg)).module
    model.load_state_dict(state)
    drawn = load_mask(full / "level_00" / "early_bird" / f"step_{step:07d}.safetensors")
    modules = dict(model.named_modules())
    params = [(modules[n.removesuffix(".weight")], "weight") for n in drawn]
    tprune.global_unstructured(params, pruning_method=tprune.L1Unstructured, amount=0.2)
    for name in drawn:
        assert torch.equal(drawn[name], modules[name.removesuffix(".weight")].weight_mask.bool()), name


def test_auto_mode_ends_dense_training_where_the_detector_fires(full, auto):
    rec = record(auto)
    metrics = json.loads((auto / "level_00" / "metrics.json").read_text())
    history = (auto / "level_00" / "history.csv").read_text().splitlines()
    assert rec["stop"] and rec["fired_step"] is not None and rec["fired_step"] < TOTAL
    assert metrics["steps"] == rec["final_step"] == rec["fired_step"]
    assert rec["steps_saved"] == TOTAL - rec["fired_step"] > 0
    assert int(history[-1].split(",")[0]) == rec["fired_step"]
    # same draws as the full run up to the stop (the detector only ends training) …
    for a, b in zip(record(full)["draws"], rec["draws"][:-1]):
        assert a["step"] == b["step"] and a["distance_to_previous"] == pytest.approx(b["distance_to_previous"])
    # … and the two draws before the stop were both closer than the threshold
    assert all(d["distance_to_previous"] < 0.04 for d in rec["draws"][-2:])
    level1 = load_mask(auto / "level_01" / "mask.safetensors")
    last = load_mask(auto / "level_00" / rec["draws"][-1]["mask"])
    assert all(torch.equal(level1[n], last[n]) for n in level1)


def test_branch_retrains_from_the_early_mask(full):
    out, metrics = run_branch(full / "level_01", "early_bird", fraction=0.3)
    assert out.name == "branch_early_bird_0.3"
    step = round(0.3 * TOTAL)
    assert metrics["early_bird_step"] == step and 0.0 <= metrics["accuracy"] <= 1.0
    trained = load_mask(out / "mask.safetensors")
    drawn = load_mask(full / "level_00" / "early_bird" / f"step_{step:07d}.safetensors")
    assert all(torch.equal(trained[n], drawn[n]) for n in drawn)
    with pytest.raises(TicketlabError, match="no early-bird draw"):
        run_branch(full / "level_01", "early_bird", fraction=0.35)
    with pytest.raises(TicketlabError, match="level 1"):
        run_branch(full / "level_00", "early_bird", fraction=0.3)


def test_stop_without_draws_is_rejected(tmp_path):
    cfg = load_config("configs/digits_lenet.yaml", ["prune.early_bird_stop=true"])
    with pytest.raises(TicketlabError, match="prune.early_bird_stop"):
        run_imp(cfg, tmp_path / "run", log=lambda s: None)
    assert not (tmp_path / "run").exists()


def test_report_gives_each_draw_its_mean_and_std_over_seeds(full, auto, tmp_path_factory):
    """Paper 001 Fig. 2f is a mean over seeds with an error band: the report's per-series table holds,
    per draw, the mean and sample std of the seeds' IoUs and retrained metrics, read back from the files."""
    second = tmp_path_factory.mktemp("eb") / "seed1"
    run_imp(config("train.seed=1"), second, log=lambda s: None)
    for run in (full, second):  # both seeds retrain the 50% mask; only seed 1 the 20% one
        if not (run / "level_01" / "branch_early_bird_0.5").is_dir():
            run_branch(run / "level_01", "early_bird", fraction=0.5)
    run_branch(second / "level_01", "early_bird", fraction=0.2)
    report = tmp_path_factory.mktemp("eb") / "report"
    report.mkdir(exist_ok=True)
    blocks = early_bird_sections(report, load_runs([full, second, auto]), written := [])
    assert report / "early_bird.png" in written
    rows = list(csv.DictReader(open(report / "early_bird_by_series.csv", encoding="utf-8")))
    assert len({r["series"] for r in rows}) == 2  # seeds 0 + 1, and the automatic run alone

    def retrained(run, step):
        found = [json.loads(p.read_text()) for p in (run / "level_01").glob("branch_early_bird_*/metrics.json")]
        return [m["accuracy"] for m in found if m["early_bird_step"] == step]

    pair = [r for r in rows if r["runs"] == "2"]
    assert [int(r["step"]) for r in pair] == [d["step"] for d in record(full)["draws"]]
    for r in pair:
        step = int(r["step"])
        kept = [next(d["iou_with_final"] for d in record(run)["draws"] if d["step"] == step) for run in (full, second)]
        assert float(r["iou_with_final_mean"]) == pytest.approx(statistics.mean(kept))
        assert float(r["iou_with_final_std"]) == pytest.approx(statistics.stdev(kept))
        again = retrained(full, step) + retrained(second, step)
        assert int(r["retrained_runs"]) == len(again)
        if len(again) == 2:
            assert float(r["retrained_std"]) == pytest.approx(statistics.stdev(again))
        if again:
            assert float(r["retrained_mean"]) == pytest.approx(statistics.mean(again))
        tickets = [json.loads((run / "level_01" / "metrics.json").read_text())["accuracy"] for run in (full, second)]
        assert float(r["ticket_mean"]) == pytest.approx(statistics.mean(tickets))
    assert {int(r["retrained_runs"]) for r in pair} >= {1, 2}
    alone = [r for r in rows if r["runs"] == "1"]
    assert [int(r["step"]) for r in alone] == [d["step"] for d in record(auto)["draws"]]
    assert all(r["iou_with_final_std"] == "" and r["ticket_runs"] == "0" for r in alone)  # stopped: no ticket line
    shown = blocks[0].table[1]  # the page's table: mean (±std) [seeds] where there are two seeds
    assert [row[2].endswith("[2]") and "(±" in row[2] for row in shown] == [r["runs"] == "2" for r in rows]
