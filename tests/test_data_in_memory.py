"""In-memory uint8 sets batched by tensor ops: crops, flips and normalisation as torchvision defines
them, batches that are a pure function of (seed, step), and the same samples one-by-one."""

import torch
import torch.nn.functional as F

from ticketlab.data.bundle import DataBundle
from ticketlab.data.in_memory import BatchView, ImageTensors, random_crop
from ticketlab.data.transforms import Stats
from ticketlab.train.data_order import StepBatchSampler
from ticketlab.train.loaders import MemoryTrainBatches, train_loader, val_loader

STATS = Stats((0.5, 0.25), (0.2, 0.4))


def images(n=40, c=2, side=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, c, side, side), dtype=torch.uint8, generator=g), torch.arange(n) % 7


def test_crop_is_a_zero_padded_shift_per_image():
    x = torch.rand(64, 2, 10, 10) + 0.5  # no zeros inside, so the padding shows
    out = random_crop(x, 4, torch.Generator().manual_seed(0))
    padded = F.pad(x, (4, 4, 4, 4))
    offsets = []
    for i in range(64):
        hits = [(dy, dx) for dy in range(9) for dx in range(9) if torch.equal(out[i], padded[i, :, dy:dy + 10, dx:dx + 10])]
        assert len(hits) == 1, i  # exactly one shift of its own padded image
        offsets.append(hits[0])
    assert len(set(offsets)) > 20 and {o[0] for o in offsets} >= {0, 8}  # uniform over the 9×9 shifts


def test_view_normalises_and_flips_half():
    x, _ = images(200)
    plain = BatchView(STATS)(x)
    mean, std = torch.tensor(STATS.mean)[:, None, None], torch.tensor(STATS.std)[:, None, None]
    assert torch.allclose(plain, (x.float() / 255 - mean) / std, atol=1e-6)
    flipped = BatchView(STATS, flip=True)(x, torch.Generator().manual_seed(3))
    same = [torch.equal(f, p) for f, p in zip(flipped, plain)]
    mirrored = [torch.equal(f, p.flip(-1)) for f, p in zip(flipped, plain)]
    assert all(a or b for a, b in zip(same, mirrored)) and 70 < sum(mirrored) < 130


def test_resize_matches_torchvision():
    from torchvision.transforms import v2

    x, _ = images(3, side=28)
    out = BatchView(STATS, size=16)(x)
    ref = torch.stack([v2.Normalize(list(STATS.mean), list(STATS.std))(
        v2.Resize(16, antialias=True)(img.float() / 255)) for img in x])
    assert out.shape == (3, 2, 16, 16) and torch.allclose(out, ref, atol=1e-5)


def bundle(augment=True):
    x, y = images()
    view = BatchView(STATS, crop=augment, flip=augment)
    return DataBundle(ImageTensors(x, y, view), ImageTensors(x[:13], y[:13], BatchView(STATS)), 7, 2, 10)


def batches(data, start, stop, seed=5, **kw):
    loader = train_loader(data, batch_size=8, seed=seed, start=start, stop=stop, num_workers=0,
                          pin_memory=False, **kw)
    return [(x.clone(), y.clone()) for x, y in loader]


def test_batches_are_pure_functions_of_seed_and_step():
    data = bundle()
    assert isinstance(train_loader(data, batch_size=8, seed=0, start=0, stop=1, num_workers=0, pin_memory=False),
                      MemoryTrainBatches)
    torch.manual_seed(0)
    state = torch.get_rng_state()
    ref = batches(data, 0, 12)
    assert torch.equal(torch.get_rng_state(), state)  # the global generator is left alone
    torch.manual_seed(123)
    resumed = batches(data, 7, 12)  # resuming at step 7: the same batches, bit for bit
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(resumed, ref[7:]))
    other = batches(data, 0, 12, seed=6)
    assert not torch.equal(other[0][0], ref[0][0])
    # the labels follow the data order of `data_order`: each epoch is a permutation
    order = [k for keys in StepBatchSampler(40, 8, 5, 0, 5) for _, _, k in keys]
    assert torch.equal(torch.cat([y for _, y in ref[:5]]), data.train.labels[order])


def test_shards_of_ranks_make_up_the_batch():
    data = bundle(augment=False)
    whole = batches(data, 0, 6)
    shards = [batches(data, 0, 6, rank=r, world_size=2) for r in range(2)]
    for step in range(6):
        assert torch.equal(torch.cat([shards[0][step][0], shards[1][step][0]]), whole[step][0])


def test_eval_batches_in_file_order_equal_single_samples():
    data = bundle()
    xs, ys = zip(*val_loader(data, batch_size=5, num_workers=0, pin_memory=False))
    assert [len(y) for y in ys] == [5, 5, 3]
    x = torch.cat(xs)
    assert torch.equal(x, torch.stack([data.val[i][0] for i in range(13)]))
    assert torch.cat(ys).tolist() == [data.val[i][1] for i in range(13)]
    halves = [torch.cat([b for b, _ in val_loader(data, batch_size=5, num_workers=0, pin_memory=False,
                                                   rank=r, world_size=2)]) for r in range(2)]
    assert torch.equal(torch.cat(halves), x)


def test_a_per_sample_transform_turns_batching_off():
    data = bundle()
    data.train.transform = lambda img: img.float().mean()
    loader = train_loader(data, batch_size=8, seed=0, start=0, stop=2, num_workers=0, pin_memory=False)
    assert not isinstance(loader, MemoryTrainBatches)
    x, _ = next(iter(loader))
    assert x.shape == (8,)
