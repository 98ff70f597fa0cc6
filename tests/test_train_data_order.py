"""Data order and augmentation are pure functions of (seed, epoch, batch): any start step, any workers."""

import torch
from torch.utils.data import Dataset

from ticketlab.data.bundle import DataBundle
from ticketlab.train import epoch_permutation
from ticketlab.train.data_order import StepBatchSampler
from ticketlab.train.loaders import train_loader


class Jitter(Dataset):
    def __len__(self):
        return 10

    def __getitem__(self, i):
        return torch.tensor(float(i)) + torch.rand(()), i


def test_each_epoch_is_a_permutation_fixed_by_seed_and_epoch():
    a, b = epoch_permutation(10, 0, 0), epoch_permutation(10, 0, 1)
    assert sorted(a.tolist()) == list(range(10)) and not torch.equal(a, b)
    assert torch.equal(a, epoch_permutation(10, 0, 0))
    assert not torch.equal(a, epoch_permutation(10, 1, 0))


def test_batches_cover_each_epoch_and_start_anywhere():
    full = list(StepBatchSampler(10, 4, seed=0, start=0, stop=9))  # 3 steps per epoch, last batch of 2
    assert [len(b) for b in full] == [4, 4, 2] * 3
    for epoch in range(3):
        keys = [k for b in full[3 * epoch:3 * epoch + 3] for k in b]
        assert {e for e, _, _ in keys} == {epoch} and sorted(i for _, _, i in keys) == list(range(10))
        assert [{b for _, b, _ in batch} for batch in full[3 * epoch:3 * epoch + 3]] == [{0}, {1}, {2}]
    assert list(StepBatchSampler(10, 4, seed=0, start=4, stop=9)) == full[4:]


def test_samples_do_not_depend_on_workers_start_or_global_rng():
    bundle = DataBundle(train=Jitter(), val=Jitter(), num_classes=1, in_channels=1, image_size=1)

    def batches(start, workers):
        loader = train_loader(bundle, batch_size=4, seed=5, start=start, stop=6, num_workers=workers,
                              pin_memory=False)
        return [x for x, _ in loader]

    torch.manual_seed(0)
    state = torch.get_rng_state()
    ref = batches(0, 0)
    assert torch.equal(torch.get_rng_state(), state)  # loading data leaves the global generator alone
    torch.manual_seed(1)
    assert all(torch.equal(a, b) for a, b in zip(batches(2, 0), ref[2:]))
    assert all(torch.equal(a, b) for a, b in zip(batches(0, 2), ref))
