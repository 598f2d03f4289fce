import pytest

from reid.data.sampler import CrossModalityIdentitySampler
from reid.data.samples import Sample
from reid.errors import ReidError


def training_list(num_ids=12, vis_per_id=5, ir_per_id=3):
    samples = []
    for pid in range(num_ids):
        samples += [Sample(f"v{pid}_{k}.jpg", pid, 1, "vis") for k in range(vis_per_id)]
        samples += [Sample(f"i{pid}_{k}.jpg", pid, 2, "ir") for k in range(ir_per_id)]
    samples.append(Sample("only_visible.jpg", 99, 1, "vis"))  # cannot be paired
    return samples


def test_batch_composition():
    samples = training_list()
    sampler = CrossModalityIdentitySampler(samples, identities=4, instances=2, seed=0)
    for batch in sampler:
        assert len(batch) == 4 * 2 * 2
        chosen = [samples[i] for i, _ in batch]
        pids = [s.pid for s in chosen]
        assert len(set(pids)) == 4 and 99 not in pids
        for block in range(4):
            group = chosen[block * 4:(block + 1) * 4]
            assert [s.modality for s in group] == ["vis", "vis", "ir", "ir"] and len({s.pid for s in group}) == 1


def test_epoch_length_follows_the_larger_modality():
    sampler = CrossModalityIdentitySampler(training_list(), identities=4, instances=2)
    assert len(sampler) == len(list(sampler)) == (12 * 5 + 1) // (4 * 2) + 1


def test_deterministic_per_seed_and_epoch():
    samples = training_list()
    first, second = (CrossModalityIdentitySampler(samples, 4, 2, seed=5) for _ in range(2))
    assert list(first) == list(second)
    second.set_epoch(1)
    assert list(first) != list(second)
    assert list(CrossModalityIdentitySampler(samples, 4, 2, seed=6)) != list(first)


def test_distributed_ranks_get_disjoint_identities_in_step():
    samples = training_list()
    ranks = [CrossModalityIdentitySampler(samples, 3, 2, seed=1, rank=r, world_size=2) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1])
    for batch_0, batch_1 in zip(*ranks, strict=True):
        assert not {samples[i].pid for i, _ in batch_0} & {samples[i].pid for i, _ in batch_1}


def test_too_few_identities():
    with pytest.raises(ReidError, match="needs 16 identities"):
        CrossModalityIdentitySampler(training_list(num_ids=10), identities=8, world_size=2)
