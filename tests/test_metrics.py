import numpy as np
import pytest
import torch
from reference_metrics import evaluate_rank_reference

from reid import metrics
from reid.data.protocols import PROTOCOLS
from reid.errors import ReidError
from reid.metrics import RankEvaluator, evaluate_embeddings, evaluate_rank, pairwise_distance


def assert_same(result, expected):
    np.testing.assert_allclose(result.cmc, expected.cmc, atol=1e-6)
    assert result.mAP == pytest.approx(expected.mAP, abs=1e-6)
    assert result.mINP == pytest.approx(expected.mINP, abs=1e-6)
    assert result.num_valid_queries == expected.num_valid_queries


def random_case(seed: int, protocol: str):
    """Queries and a gallery with ties, queries without a match and single-image identities."""
    rng = np.random.default_rng(seed)
    num_queries, num_gallery = rng.integers(1, 40), rng.integers(1, 60)
    num_ids = rng.integers(1, 12)
    if protocol == "sysu":
        query_camids, gallery_camids = rng.choice([3, 6], num_queries), rng.choice([1, 2, 4, 5], num_gallery)
    else:
        query_camids, gallery_camids = rng.integers(1, 4, num_queries), rng.integers(1, 4, num_gallery)
    query_pids = rng.integers(0, num_ids + 2, num_queries)  # ids num_ids and num_ids + 1 are never in the gallery
    gallery_pids = rng.integers(0, num_ids, num_gallery)
    query_pids[0] = gallery_pids[0]  # at least one query can match
    query_camids[0] = 6 if protocol == "sysu" else (gallery_camids[0] % 3) + 1
    distances = rng.integers(0, 5, (num_queries, num_gallery)).astype(np.float32) if seed % 2 else \
        rng.random((num_queries, num_gallery), dtype=np.float32)  # odd seeds: many ties
    return distances, query_pids, gallery_pids, query_camids, gallery_camids


@pytest.mark.parametrize("protocol", PROTOCOLS)  # every registered rule, a new one included
@pytest.mark.parametrize("max_rank", [20, 5])
def test_matches_reference_on_random_cases(protocol, max_rank):
    compared = with_invalid_queries = 0
    for seed in range(60):
        case = random_case(seed, protocol)
        with np.errstate(all="ignore"):  # the reference divides by zero when no query is valid
            expected = evaluate_rank_reference(*case, protocol=protocol, max_rank=max_rank)
        if expected.num_valid_queries == 0:
            with pytest.raises(ReidError, match="valid match"):
                evaluate_rank(*case, protocol=protocol, max_rank=max_rank)
            continue
        assert_same(evaluate_rank(*case, protocol=protocol, max_rank=max_rank), expected)
        compared += 1
        with_invalid_queries += expected.num_valid_queries < len(case[1])
    assert compared >= 50 and with_invalid_queries >= 20


def test_chunking_does_not_change_results(monkeypatch):
    case = random_case(3, "llcm")
    whole = evaluate_rank(*case, protocol="llcm")
    monkeypatch.setattr(metrics, "_CHUNK_ELEMENTS", 7)  # one query per chunk
    assert_same(evaluate_rank(*case, protocol="llcm"), whole)


def test_average_precision_and_inp_by_hand():
    # ranked gallery: pid 1, 2, 1, 3, 1 -> positives at places 1, 3, 5
    result = evaluate_rank(np.array([[0.1, 0.2, 0.3, 0.4, 0.5]]), [1], [1, 2, 1, 3, 1], [1], [2, 2, 2, 2, 2])
    assert result.mAP == pytest.approx(100 * (1 / 1 + 2 / 3 + 3 / 5) / 3)  # percent, as every report gives it
    assert result.mINP == pytest.approx(100 * 3 / 5)
    np.testing.assert_array_equal(result.cmc, [100, 100, 100, 100, 100])


def test_same_pid_and_camera_are_removed():
    # pid 1 on the query's own camera is removed: the filtered list is [2, 1]
    args = (np.array([[0.1, 0.2, 0.3]]), [1], [1, 2, 1], [1], [1, 2, 2])
    llcm = evaluate_rank(*args, protocol="llcm")
    assert llcm.mAP == pytest.approx(50) and llcm.mINP == pytest.approx(50)
    np.testing.assert_array_equal(llcm.cmc, [0, 100, 100])
    regdb = evaluate_rank(*args, protocol="regdb")  # RegDB removes nothing
    assert regdb.mAP == pytest.approx(100 * (1 + 2 / 3) / 2) and regdb.cmc[0] == 100


def test_deduplicated_cmc_counts_identities_not_images():
    # ranked: 2, 2, 2, 1 -> the first positive is 4th image but 2nd identity
    args = (np.array([[0.1, 0.2, 0.3, 0.4]]), [1], [2, 2, 2, 1], [1], [2, 2, 2, 2])
    np.testing.assert_array_equal(evaluate_rank(*args, protocol="llcm").cmc, [0, 100, 100, 100])
    np.testing.assert_array_equal(evaluate_rank(*args, protocol="vcm").cmc, [0, 0, 0, 100])
    # mAP and mINP use the full list either way
    assert evaluate_rank(*args, protocol="llcm").mAP == pytest.approx(25)


def test_deduplication_ignores_removed_items():
    # ranked 1 (query's camera: removed), 3, 3, 1 -> identities in order 3, 1: the query's identity is 2nd
    args = (np.array([[0.1, 0.2, 0.3, 0.4]]), [1], [1, 3, 3, 1], [1], [1, 2, 2, 2])
    np.testing.assert_array_equal(evaluate_rank(*args, protocol="llcm").cmc, [0, 100, 100, 100])


def test_sysu_cam3_queries_drop_every_cam2_item():
    gallery_pids, gallery_camids = [5, 1], [2, 1]
    from_cam3 = evaluate_rank(np.array([[0.1, 0.2]]), [1], gallery_pids, [3], gallery_camids, protocol="sysu")
    from_cam6 = evaluate_rank(np.array([[0.1, 0.2]]), [1], gallery_pids, [6], gallery_camids, protocol="sysu")
    assert from_cam3.cmc[0] == 100 and from_cam6.cmc[0] == 0


def test_ties_are_broken_by_gallery_order():
    tied = np.array([[0.5, 0.5]])
    assert evaluate_rank(tied, [1], [2, 1], [1], [2, 2]).cmc[0] == 0
    assert evaluate_rank(tied, [1], [1, 2], [1], [2, 2]).cmc[0] == 100


def test_queries_without_valid_match_are_left_out():
    distances = np.array([[0.1, 0.2], [0.1, 0.2]])
    result = evaluate_rank(distances, [1, 9], [1, 2], [1, 1], [2, 2])
    assert result.num_valid_queries == 1 and result.mAP == 100 and result.cmc[0] == 100


def test_small_gallery_shortens_the_curve_and_rank_saturates():
    result = evaluate_rank(np.array([[0.3, 0.2, 0.1]]), [1], [1, 2, 3], [1], [2, 2, 2])
    assert len(result.cmc) == 3
    assert result.rank(1) == 0 and result.rank(3) == 100 and result.rank(20) == 100


def test_no_valid_query_and_empty_gallery_are_user_errors():
    with pytest.raises(ReidError, match="none of the 1 queries"):
        evaluate_rank(np.array([[0.1]]), [1], [2], [1], [2])
    with pytest.raises(ReidError, match="gallery is empty"):
        evaluate_rank(np.zeros((1, 0)), [1], [], [1], [])
    with pytest.raises(ReidError, match="unknown protocol"):
        evaluate_rank(np.array([[0.1]]), [1], [1], [1], [2], protocol="market")


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_feature_entry_point_equals_distance_entry_point(metric, monkeypatch):
    generator = torch.Generator().manual_seed(0)
    centres = torch.randn(6, 16, generator=generator)
    gallery_pids = torch.arange(30) % 6
    query_pids = torch.arange(12) % 6
    gallery = centres[gallery_pids] + 0.8 * torch.randn(30, 16, generator=generator)
    query = centres[query_pids] + 0.8 * torch.randn(12, 16, generator=generator)
    gallery_camids, query_camids = torch.arange(30) % 3, torch.full((12,), 7)
    labels = (query_pids, gallery_pids, query_camids, gallery_camids)
    expected = evaluate_rank(pairwise_distance(query, gallery, metric), *labels, "llcm")
    monkeypatch.setattr(metrics, "_CHUNK_ELEMENTS", 60)  # two queries per chunk
    assert_same(evaluate_embeddings(query, gallery, *labels, "llcm", metric), expected)
    assert expected.mAP > 30  # clustered embeddings are found


def test_pairwise_distances():
    a, b = torch.tensor([[3.0, 4.0]]), torch.tensor([[3.0, 4.0], [0.0, 1.0], [-3.0, -4.0]])
    torch.testing.assert_close(pairwise_distance(a, b, "cosine"), torch.tensor([[0.0, 0.2, 2.0]]))
    torch.testing.assert_close(pairwise_distance(a, b, "euclidean"), torch.tensor([[0.0, 18.0, 100.0]]))


def test_evaluator_accumulates_chunks_like_one_call():
    distances, query_pids, gallery_pids, query_camids, gallery_camids = random_case(4, "vcm")
    evaluator = RankEvaluator(gallery_pids, gallery_camids, "vcm")
    for start in range(0, len(distances), 3):
        evaluator.process(torch.as_tensor(distances[start:start + 3]), query_pids[start:start + 3],
                          query_camids[start:start + 3])
    labels = (query_pids, gallery_pids, query_camids, gallery_camids)
    assert_same(evaluator.evaluate(), evaluate_rank(distances, *labels, "vcm"))
    evaluator.reset()
    with pytest.raises(ReidError):
        evaluator.evaluate()


@pytest.mark.parametrize("protocol", ["llcm", "standard"])
def test_negative_distances_signed_zeros_and_float64(protocol):
    rng = np.random.default_rng(11)
    for _ in range(20):
        distances, *labels = random_case(int(rng.integers(1000)), protocol)
        values = rng.choice([-1e300, -2.5, -1.0, -0.0, 0.0, 1e-320, 1.0, 3.0], size=distances.shape)
        expected = evaluate_rank_reference(values, *labels, protocol)
        if expected.num_valid_queries:
            assert_same(evaluate_rank(values, *labels, protocol), expected)


def test_nan_distances_are_refused():
    with pytest.raises(ReidError, match="NaN"):
        evaluate_rank(np.array([[np.nan, 0.1]]), [1], [1, 2], [1], [2, 2])


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_kept_queries_add_up_to_the_metrics(protocol, monkeypatch):
    case = random_case(11, protocol)
    monkeypatch.setattr(metrics, "_CHUNK_ELEMENTS", 50)  # several chunks, some maybe without a valid query
    whole = evaluate_rank(*case, protocol=protocol)
    evaluator = RankEvaluator(case[2], case[4], protocol, keep_queries=True)
    evaluator.process(torch.as_tensor(case[0]), case[1], case[3])
    kept = evaluator.evaluate()
    valid = ~np.isnan(kept.query_ap)
    assert len(kept.query_ap) == len(case[1]) and valid.sum() == whole.num_valid_queries
    assert kept.query_ap[valid].mean() == pytest.approx(whole.mAP)
    assert (kept.query_first_match[~valid] == 0).all()
    for k in range(1, len(whole.cmc) + 1):
        assert 100 * ((kept.query_first_match[valid] >= 1) & (kept.query_first_match[valid] <= k)).mean() == \
            pytest.approx(whole.cmc[k - 1])
