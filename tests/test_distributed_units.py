"""The pieces of distributed training that need no second process: every rank's shard of a step's
batch is the single-process batch cut in order, the loss weights make DDP's rank average a sample
mean, merged evaluation shards equal one whole evaluation, per-rank RNG states round-trip; plus
the AMP options on CPU and the TensorBoard scalars a level writes."""

import csv

import pytest
import torch
import torch.nn.functional as F
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn
from torch.utils.data import DataLoader, Subset

from ticketlab.config import DataConfig, TrainConfig, load_config
from ticketlab.data import build_data
from ticketlab.errors import TicketlabError
from ticketlab.tasks.classification import ClassificationTask
from ticketlab.train import HISTORY_FILE, LevelRequest, LevelRun, train_level
from ticketlab.train.amp import amp_for
from ticketlab.train.checkpoint import capture_rng, merge_rank_rng, rank_rng
from ticketlab.train.data_order import StepBatchSampler, shard_bounds
from ticketlab.train.loop import check_shardable


@pytest.mark.parametrize("num_samples,batch_size,world", [(50, 8, 2), (50, 12, 2), (41, 6, 3), (46, 12, 4)])
def test_rank_shards_concatenate_to_the_single_process_batch(num_samples, batch_size, world):
    single = list(StepBatchSampler(num_samples, batch_size, seed=5, start=0, stop=20))
    ranks = [StepBatchSampler(num_samples, batch_size, seed=5, start=0, stop=20, rank=r, world_size=world)
             for r in range(world)]
    shards = [list(s) for s in ranks]
    for step, batch in enumerate(single):
        assert sum((shards[r][step] for r in range(world)), []) == batch
        # DDP averages rank gradients: the weights of the rank means must average to 1
        weights = [ranks[r].shard_weight(step) for r in range(world)]
        assert sum(weights) / world == pytest.approx(1.0)
        assert all(shards[r][step] for r in range(world))


def test_weighted_rank_losses_average_to_the_batch_mean():
    torch.manual_seed(0)
    losses = torch.rand(10)  # per-sample losses of a 10-sample last batch split over 4 ranks
    sampler = StepBatchSampler(10, 10, seed=0, start=0, stop=1, rank=0, world_size=4)
    per_rank = []
    for r in range(4):
        lo, hi = shard_bounds(10, r, 4)
        sampler.rank = r
        per_rank.append(losses[lo:hi].mean() * sampler.shard_weight(0))
    assert torch.stack(per_rank).mean() == pytest.approx(losses.mean().item(), rel=1e-6)


def test_batch_must_split_evenly_over_processes():
    check_shardable(64, 1348, 2)
    check_shardable(63, 1348, 1)
    with pytest.raises(TicketlabError, match="train.batch_size: 63 .* not divisible by the 2 processes"):
        check_shardable(63, 1348, 2)
    with pytest.raises(TicketlabError, match="last batch of each epoch has 1, fewer than the 4"):
        check_shardable(8, 17, 4)


def test_rng_states_of_every_rank_round_trip():
    torch.manual_seed(1)
    a = capture_rng()
    torch.manual_seed(2)
    b = capture_rng()
    merged = merge_rank_rng([a, b])
    for rank, expected in enumerate((a, b)):
        got = rank_rng(merged, rank)
        assert got.keys() == expected.keys()
        assert all(torch.equal(got[k], expected[k]) for k in got)


def test_merged_classification_shards_equal_one_evaluation():
    data = build_data(DataConfig())
    task = ClassificationTask(10)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval()
    whole = task.evaluate(model, DataLoader(data.val, batch_size=64), torch.device("cpu"))
    shards = [task.evaluate_shard(model, DataLoader(Subset(data.val, range(*shard_bounds(len(data.val), r, 3))),
                                                    batch_size=64), torch.device("cpu")) for r in range(3)]
    merged = task.merge_evaluations(shards)
    assert merged.keys() == whole.keys()
    for key in whole:
        assert merged[key] == pytest.approx(whole[key], rel=1e-6)  # float32 sums per batch
    images = torch.stack([data.val[i][0] for i in range(len(data.val))])
    labels = torch.tensor([int(data.val[i][1]) for i in range(len(data.val))])
    with torch.no_grad():  # independent reference: torch on the whole split at once
        logits = model(images)
    assert merged["accuracy"] == pytest.approx((logits.argmax(1) == labels).double().mean().item())
    assert merged["val_loss"] == pytest.approx(F.cross_entropy(logits, labels).item(), rel=1e-5)


@pytest.mark.parametrize("dtype", ["auto", "bf16", "fp16"])
def test_amp_options_change_nothing_on_cpu(dtype):
    amp = amp_for(torch.device("cpu"), True, dtype)
    assert amp.dtype is None and not amp.scaler.is_enabled()


def test_old_configs_stay_valid_and_new_keys_are_checked(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train: {amp: true}\n")
    cfg = load_config(path, [])
    assert (cfg.train.amp, cfg.train.amp_dtype, cfg.train.channels_last, cfg.train.tensorboard) == \
        (True, "auto", False, True)
    with pytest.raises(TicketlabError, match="train.amp_dtype"):
        load_config(path, ["train.amp_dtype=fp8"])


def test_tensorboard_holds_every_step_and_every_evaluation(tmp_path):
    data = build_data(DataConfig())
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    cfg = TrainConfig(duration="12it", eval_every="4it", checkpoint_every="0it", batch_size=128, lr=0.05,
                      device="cpu")
    log_dir = tmp_path / "tensorboard" / "level_00"
    train_level(LevelRequest(model, ClassificationTask(10), data, cfg, workdir=tmp_path / "level_00", run=LevelRun(log_dir=log_dir)))
    events = EventAccumulator(str(log_dir))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/lr", "val/accuracy", "val/val_loss"} <= tags
    loss = [e.value for e in events.Scalars("train/loss")]
    assert [e.step for e in events.Scalars("train/loss")] == list(range(1, 13))
    with open(tmp_path / "level_00" / HISTORY_FILE) as f:
        rows = list(csv.DictReader(f))
    assert [e.step for e in events.Scalars("val/accuracy")] == [int(r["step"]) for r in rows] == [4, 8, 12]
    for i, row in enumerate(rows):  # the CSV's per-row mean is the mean of the logged steps
        assert sum(loss[4 * i:4 * i + 4]) / 4 == pytest.approx(float(row["loss"]), rel=1e-5)
        assert events.Scalars("val/accuracy")[i].value == pytest.approx(float(row["accuracy"]), rel=1e-6)
    assert all(e.value == pytest.approx(0.05) for e in events.Scalars("train/lr"))


def test_tensorboard_off_writes_nothing(tmp_path):
    data = build_data(DataConfig())
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    cfg = TrainConfig(duration="2it", checkpoint_every="0it", batch_size=128, device="cpu", tensorboard=False)
    train_level(LevelRequest(model, ClassificationTask(10), data, cfg, workdir=tmp_path / "w", run=LevelRun(log_dir=tmp_path / "tb")))
    assert not (tmp_path / "tb").exists()
