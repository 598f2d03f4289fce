import numpy as np
import pytest
import torch
from reference_metrics import re_ranking_reference

from reid import rerank
from reid.metrics import evaluate_rank, pairwise_distance
from reid.rerank import k_reciprocal_rerank


def clustered(seed: int, num_queries: int, num_gallery: int, num_ids: int = 8):
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(num_ids, 32, generator=generator)
    query_pids = torch.randint(0, num_ids, (num_queries,), generator=generator)
    gallery_pids = torch.randint(0, num_ids, (num_gallery,), generator=generator)
    query = centres[query_pids] + 0.9 * torch.randn(num_queries, 32, generator=generator)
    gallery = centres[gallery_pids] + 0.9 * torch.randn(num_gallery, 32, generator=generator)
    return query, gallery, query_pids, gallery_pids


def distances(query, gallery):
    def euclidean(a, b):
        return pairwise_distance(a, b, "euclidean").sqrt()

    return euclidean(query, gallery), euclidean(query, query), euclidean(gallery, gallery)


@pytest.mark.parametrize("seed,num_queries,num_gallery,k1,k2,lam", [
    (0, 15, 40, 20, 6, 0.3),
    (1, 30, 70, 20, 6, 0.3),
    (2, 12, 30, 6, 3, 0.5),
    (3, 20, 25, 10, 1, 0.1),
])
def test_matches_the_authors_algorithm(seed, num_queries, num_gallery, k1, k2, lam):
    q_g, q_q, g_g = distances(*clustered(seed, num_queries, num_gallery)[:2])
    expected = re_ranking_reference(q_g.numpy(), q_q.numpy(), g_g.numpy(), k1, k2, lam)
    result = k_reciprocal_rerank(q_g, q_q, g_g, k1, k2, lam)
    np.testing.assert_allclose(result.numpy(), expected, rtol=1e-5, atol=1e-5)


def test_chunked_equals_unchunked(monkeypatch):
    q_g, q_q, g_g = distances(*clustered(5, 25, 60)[:2])
    whole = k_reciprocal_rerank(q_g, q_q, g_g)
    monkeypatch.setattr(rerank, "_BLOCK_ELEMENTS", 100)  # a row or two per block
    torch.testing.assert_close(k_reciprocal_rerank(q_g, q_q, g_g), whole)


def test_reranking_improves_map_on_clustered_data():
    query, gallery, query_pids, gallery_pids = clustered(7, 60, 200, num_ids=10)
    q_g, q_q, g_g = distances(query, gallery)
    cams_q, cams_g = torch.zeros(60), torch.ones(200)
    before = evaluate_rank(q_g, query_pids, gallery_pids, cams_q, cams_g).mAP
    after = evaluate_rank(k_reciprocal_rerank(q_g, q_q, g_g), query_pids, gallery_pids, cams_q, cams_g).mAP
    assert after > before
