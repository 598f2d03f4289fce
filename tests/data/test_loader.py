import torch

from reid.data import LLCM, VCMHITSZ
from reid.data.loader import SampleDataset, make_loader
from reid.data.sampler import CrossModalityIdentitySampler
from reid.data.transforms import eval_pipeline, train_pipelines
from reid.settings import AugmentConfig

CONFIG = AugmentConfig(height=64, width=32)


def test_training_batches_from_the_sampler(synthetic):
    train = LLCM(synthetic("llcm")).train()
    dataset = SampleDataset(train, train_pipelines(CONFIG), train=True)
    sampler = CrossModalityIdentitySampler(train, identities=3, instances=2)
    images, pids, camids, infrared = next(iter(make_loader(dataset, batch_sampler=sampler, num_workers=2)))
    assert images.shape == (12, 3, 64, 32) and pids.shape == (12,)
    assert infrared.tolist() == [False, False, True, True] * 3


def test_seeded_keys_are_deterministic(synthetic):
    train = LLCM(synthetic("llcm")).train()
    dataset = SampleDataset(train, train_pipelines(CONFIG), train=True)
    assert torch.equal(dataset[(3, 123)][0], dataset[(3, 123)][0])
    assert not torch.equal(dataset[(3, 123)][0], dataset[(3, 124)][0])


def test_tracklets_give_seq_len_frames(synthetic):
    split = VCMHITSZ(synthetic("vcm")).test_split()
    dataset = SampleDataset(split.query, eval_pipeline(CONFIG), seq_len=6)
    frames, pid, camid, infrared = dataset[0]
    assert frames.shape == (6, 3, 64, 32) and infrared and pid == split.query[0].pid
    batch = next(iter(make_loader(dataset, batch_size=4, num_workers=0)))
    assert batch[0].shape == (4, 6, 3, 64, 32)
