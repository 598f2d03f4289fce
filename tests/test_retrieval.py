"""Rank lists: the best gallery items of each query, without those its protocol hides, ties in gallery order."""
import pytest
import torch
from rank_samples import image_file

from reid.data.protocols import LLCM, REGDB
from reid.data.samples import Sample
from reid.retrieval import pick_queries, rank_lists


def test_rank_lists_follow_distance_and_skip_what_the_protocol_hides(four_samples, tmp_path):
    samples, features = four_samples
    query = Sample(image_file(tmp_path, "q", 200), 1, 1, "ir")
    llcm = rank_lists([query], torch.tensor([[1.0, 0.0]]), samples, features, LLCM, top_k=10)[0]
    assert [m.path for m in llcm.matches] == [samples[i].path for i in (1, 2, 3)]  # (1, cam 1) is hidden
    assert llcm.correct == [False, True, False]
    assert llcm.scores == sorted(llcm.scores, reverse=True) and llcm.scores[0] == pytest.approx(
        float(torch.nn.functional.cosine_similarity(torch.tensor([0.9, 0.1]), torch.tensor([1.0, 0.0]), 0)))
    regdb = rank_lists([query], torch.tensor([[1.0, 0.0]]), samples, features, REGDB, top_k=2)[0]
    assert [m.path for m in regdb.matches] == [samples[0].path, samples[1].path]


def test_equal_distances_keep_gallery_order(four_samples, tmp_path):
    samples, _ = four_samples
    query = Sample(image_file(tmp_path, "q", 200), 9, 5, "ir")
    tied = rank_lists([query], torch.ones(1, 2), samples, torch.ones(4, 2), REGDB)[0]
    assert [m.path for m in tied.matches] == [s.path for s in samples]


def test_pick_queries_draws_distinct_identities_reproducibly():
    samples = [Sample(f"{i}.jpg", i % 5, 1, "ir") for i in range(40)]
    chosen = pick_queries(samples, 4, seed=3)
    assert len({samples[i].pid for i in chosen}) == 4 and chosen == pick_queries(samples, 4, seed=3)
    assert len(pick_queries(samples, 10)) == 5  # no more than there are identities
