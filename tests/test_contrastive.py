"""SimCLR / MoCo pre-training tasks: losses against independent formulas, kNN against scikit-learn,
MoCo's queue and momentum encoder, masks on the key encoder, IMP end to end, bit-exact resume."""

import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from sklearn.neighbors import KNeighborsClassifier

from ticketlab.config import load_config
from ticketlab.tasks import build_task_data
from ticketlab.lottery.experiment import build_experiment
from ticketlab.lottery.imp import run_imp
from ticketlab.sparsity import load_mask
from ticketlab.tasks.contrastive import moco_logits, nt_xent
from ticketlab.tasks.knn import knn_predict
from ticketlab.train import LevelRequest, train_level
from ticketlab.train.checkpoint import CHECKPOINT_FILE

TINY = ["model.width=0.25", "train.duration=3ep", "train.eval_every=3ep", "train.checkpoint_every=1ep"]


def test_nt_xent_equals_the_per_anchor_formula():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    t = 0.3
    z = np.concatenate([z1.numpy(), z2.numpy()]).astype(np.float64)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    n, terms = 6, []
    for i in range(2 * n):
        pos = (i + n) % (2 * n)
        denom = sum(math.exp(z[i] @ z[k] / t) for k in range(2 * n) if k != i)
        terms.append(-math.log(math.exp(z[i] @ z[pos] / t) / denom))
    assert nt_xent(z1, z2, t).item() == pytest.approx(np.mean(terms), rel=1e-5)


def test_moco_logits_put_the_positive_first_and_the_queue_after():
    g = torch.Generator().manual_seed(1)
    q, k = torch.randn(3, 4, generator=g), torch.randn(3, 4, generator=g)
    queue = torch.nn.functional.normalize(torch.randn(7, 4, generator=g), dim=1)  # the queue holds unit keys
    logits = moco_logits(q, k, queue, 0.2)
    cos = torch.nn.functional.cosine_similarity
    assert torch.allclose(logits[:, 0], cos(q, k) / 0.2, atol=1e-6)
    for i in range(3):
        assert torch.allclose(logits[i, 1:], cos(q[i:i + 1], queue) / 0.2, atol=1e-6)


@pytest.fixture
def clustered():
    g = torch.Generator().manual_seed(2)
    centres = torch.randn(4, 8, generator=g)
    bank_y, query_y = torch.randint(0, 4, (300,), generator=g), torch.randint(0, 4, (120,), generator=g)
    bank = centres[bank_y] + 0.9 * torch.randn(300, 8, generator=g)
    queries = centres[query_y] + 0.9 * torch.randn(120, 8, generator=g)
    return bank, bank_y, queries


def test_uniform_knn_equals_sklearn_cosine(clustered):
    bank, bank_y, queries = clustered
    ours = knn_predict(bank, bank_y, queries, 4, k=15, weighting="uniform")
    ref = KNeighborsClassifier(n_neighbors=15, metric="cosine", weights="uniform", algorithm="brute")
    ref.fit(bank.numpy(), bank_y.numpy())
    assert ours.tolist() == ref.predict(queries.numpy()).tolist()


def test_weighted_knn_equals_sklearn_with_exp_similarity_weights(clustered):
    bank, bank_y, queries = clustered
    t = 0.1
    ours = knn_predict(bank, bank_y, queries, 4, k=25, temperature=t)
    ref = KNeighborsClassifier(n_neighbors=25, metric="cosine", algorithm="brute",
                               weights=lambda d: np.exp((1.0 - d) / t))  # cosine distance = 1 - similarity
    ref.fit(bank.numpy(), bank_y.numpy())
    expected = ref.predict(queries.numpy())
    assert ours.tolist() == expected.tolist()


def moco_experiment(*extra):
    return build_experiment(load_config("configs/digits_moco.yaml", TINY + list(extra)))


def test_moco_queue_wraps_and_key_encoder_is_an_ema_outside_the_optimizer():
    exp = moco_experiment("ssl.moco_queue=10", "ssl.moco_momentum=0.9", "ssl.projection_dim=4")
    model = exp.model
    assert not any(p.requires_grad for p in model.key_encoder.parameters())
    assert "queue" in model.state_dict() and "queue_ptr" in model.state_dict()
    assert "backbone.layer1.0.conv1.weight" in model.state_dict()  # torchvision names under backbone.
    assert not any(n.startswith("key_encoder") or n.startswith("projection") for n in exp.scope)

    keys = torch.arange(24, dtype=torch.float32).reshape(6, 4)
    model.queue.zero_()
    model.enqueue(keys)
    model.enqueue(keys + 100)
    expected = torch.zeros(10, 4)
    for i, row in enumerate([*keys, *(keys + 100)]):
        expected[i % 10] = row
    assert torch.equal(model.queue, expected) and int(model.queue_ptr) == 2

    with torch.no_grad():
        for p in model.backbone.parameters():
            p.add_(1.0)
    before = {n: p.clone() for n, p in model.key_encoder.backbone.named_parameters()}
    query = dict(model.backbone.named_parameters())
    model.momentum_update()
    for n, p in model.key_encoder.backbone.named_parameters():
        assert torch.allclose(p, 0.9 * before[n] + 0.1 * query[n])


def test_moco_imp_keeps_pruned_key_encoder_weights_zero(tmp_path):
    cfg = load_config("configs/digits_moco.yaml", TINY + ["prune.levels=1", "ssl.moco_queue=256"])
    rows = run_imp(cfg, tmp_path / "run", log=lambda s: None)
    assert [r["level"] for r in rows] == [0, 1]
    level = tmp_path / "run" / "level_01"
    mask = load_mask(level / "mask.safetensors")
    final = load_file(str(level / "final.safetensors"))
    pruned = 0
    for name, keep in mask.items():
        assert name.startswith("backbone.")
        assert torch.all(final[name][~keep] == 0)
        key = final["key_encoder." + name]
        assert torch.all(key[~keep] == 0)
        assert torch.count_nonzero(key[keep]) > 0.9 * keep.sum()
        pruned += int((~keep).sum())
    assert pruned > 0
    assert final["queue"].shape == (256, 64)
    # the key encoder's zeros are pruned weights too: network sparsity counts both encoders
    params = sum(p.numel() for p in build_experiment(cfg).model.parameters())
    assert float(rows[1]["sparsity_network"]) == pytest.approx(2 * pruned / params, rel=1e-9)


def test_simclr_imp_on_digits_beats_chance(tmp_path):
    cfg = load_config("configs/digits_simclr.yaml", TINY + ["prune.levels=2"])
    rows = run_imp(cfg, tmp_path / "run", log=lambda s: None)
    assert [r["level"] for r in rows] == [0, 1, 2]
    for r in rows:
        assert float(r["knn_accuracy"]) > 0.5  # 10 classes: chance is 0.1
    assert float(rows[2]["sparsity_scope"]) == pytest.approx(0.36, abs=1e-3)


def test_moco_resume_from_checkpoint_is_bit_exact(tmp_path):
    cfg = load_config("configs/digits_moco.yaml", TINY + ["ssl.moco_queue=256"])
    exp = build_experiment(cfg)
    init = {k: v.clone() for k, v in exp.model.state_dict().items()}
    train_level(LevelRequest(exp.model, exp.task, exp.data, cfg.train, workdir=tmp_path))
    reference = {k: v.clone() for k, v in exp.model.state_dict().items()}
    ckpt = load_file(str(tmp_path / CHECKPOINT_FILE))  # left at 2ep of 3ep
    assert "model/queue" in ckpt and "model/key_encoder.backbone.conv1.weight" in ckpt
    assert not torch.equal(ckpt["model/queue"], init["queue"])

    exp.model.load_state_dict(init)  # a fresh process would build the same init; the checkpoint wins
    train_level(LevelRequest(exp.model, exp.task, exp.data, cfg.train, workdir=tmp_path))
    resumed = exp.model.state_dict()
    assert all(torch.equal(resumed[k], reference[k]) for k in reference)


def test_two_view_batches_keep_labels_and_differ():
    data = build_task_data(load_config("configs/digits_simclr.yaml"))
    torch.manual_seed(0)
    (v1, v2), label = data.train[0]
    plain, label_memory = data.memory[0]
    assert v1.shape == v2.shape == plain.shape == (1, 8, 8)
    assert label == label_memory and not torch.equal(v1, v2)
