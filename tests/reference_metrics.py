"""The oracles: straightforward per-query metrics and k-reciprocal re-ranking, slow on purpose.

``evaluate_rank_reference`` is written the way the public VI-ReID evaluation scripts are (argsort every row, then
per query filter, de-duplicate identities with np.unique and accumulate AP over the gallery in Python). The tests
hold ``reid.metrics`` to it to 1e-6 and benchmarks/bench_metrics.py measures against it; the removal rule itself
comes from the protocol object, whose own tests pin it to the datasets' rules. ``re_ranking_reference`` follows
Zhong et al. (CVPR 2017) line by line.
"""
from __future__ import annotations

import numpy as np

from reid.data.protocols import Protocol, get_protocol
from reid.metrics import RankResult


def evaluate_rank_reference(
        distances: np.ndarray,
        query_pids: np.ndarray,
        gallery_pids: np.ndarray,
        query_camids: np.ndarray,
        gallery_camids: np.ndarray,
        protocol: str | Protocol = "standard",
        max_rank: int = 20,
) -> RankResult:
    """Rank metrics one query at a time; ties go by gallery order (a stable sort)."""
    protocol = get_protocol(protocol)
    query_pids, gallery_pids = np.asarray(query_pids), np.asarray(gallery_pids)
    num_queries, num_gallery = distances.shape
    max_rank = min(max_rank, num_gallery)
    indices = np.argsort(distances, axis=1, kind="stable")
    ranked_pids = gallery_pids[indices]
    matches = (ranked_pids == query_pids[:, np.newaxis]).astype(np.int32)
    removed = protocol.removed(query_pids, query_camids, gallery_pids, gallery_camids).numpy()
    all_cmc, all_ap, all_inp, valid = [], [], [], 0
    for q in range(num_queries):
        keep = np.invert(removed[q][indices[q]])
        raw = matches[q][keep]
        if protocol.dedup_cmc:
            kept_pids = ranked_pids[q][keep]
            first = np.unique(kept_pids, return_index=True)[1]
            distinct = [kept_pids[index] for index in sorted(first)]
            cmc = (np.asarray(distinct) == query_pids[q]).astype(np.int32).cumsum()
        else:
            cmc = raw.cumsum()
        if not np.any(raw):
            continue  # no valid match: left out of mAP, mINP and the CMC denominator
        cmc = np.minimum(cmc, 1)
        all_cmc.append([cmc[min(k, len(cmc) - 1)] for k in range(max_rank)])
        positives = np.where(raw == 1)[0]
        running = raw.cumsum()
        all_inp.append(running[positives.max()] / (positives.max() + 1.0))
        precision = [hits / (i + 1.0) for i, hits in enumerate(running)]
        all_ap.append(np.sum(np.asarray(precision) * raw) / raw.sum())
        valid += 1
    return RankResult(100 * np.asarray(all_cmc, dtype=np.float64).reshape(-1, max_rank).sum(0) / valid,
                      100 * float(np.mean(all_ap)) if all_ap else float("nan"),
                      100 * float(np.mean(all_inp)) if all_inp else float("nan"), valid)


def re_ranking_reference(
        query_gallery: np.ndarray,
        query_query: np.ndarray,
        gallery_gallery: np.ndarray,
        k1: int = 20,
        k2: int = 6,
        lambda_value: float = 0.3,
) -> np.ndarray:
    """k-reciprocal re-ranking as in the authors' code, with a stable sort for reproducible ties."""
    original_dist = np.concatenate([np.concatenate([query_query, query_gallery], axis=1),
                                    np.concatenate([query_gallery.T, gallery_gallery], axis=1)], axis=0)
    original_dist = np.power(original_dist, 2).astype(np.float32)
    original_dist = np.transpose(1.0 * original_dist / np.max(original_dist, axis=0))
    weights = np.zeros_like(original_dist).astype(np.float32)
    initial_rank = np.argsort(original_dist, kind="stable").astype(np.int32)
    query_num = query_gallery.shape[0]
    all_num = original_dist.shape[0]

    for i in range(all_num):
        forward_k_neigh_index = initial_rank[i, :k1 + 1]
        backward_k_neigh_index = initial_rank[forward_k_neigh_index, :k1 + 1]
        fi = np.where(backward_k_neigh_index == i)[0]
        k_reciprocal_index = forward_k_neigh_index[fi]
        k_reciprocal_expansion_index = k_reciprocal_index
        for candidate in k_reciprocal_index:
            half = int(np.around(k1 / 2))
            candidate_forward = initial_rank[candidate, :half + 1]
            candidate_backward = initial_rank[candidate_forward, :half + 1]
            fi_candidate = np.where(candidate_backward == candidate)[0]
            candidate_k_reciprocal_index = candidate_forward[fi_candidate]
            if len(np.intersect1d(candidate_k_reciprocal_index, k_reciprocal_index)) > 2 / 3 * len(
                    candidate_k_reciprocal_index):
                k_reciprocal_expansion_index = np.append(k_reciprocal_expansion_index, candidate_k_reciprocal_index)
        k_reciprocal_expansion_index = np.unique(k_reciprocal_expansion_index)
        weight = np.exp(-original_dist[i, k_reciprocal_expansion_index])
        weights[i, k_reciprocal_expansion_index] = weight / np.sum(weight)

    original_dist = original_dist[:query_num, ]
    if k2 != 1:
        expanded = np.zeros_like(weights, dtype=np.float32)
        for i in range(all_num):
            expanded[i, :] = np.mean(weights[initial_rank[i, :k2], :], axis=0)
        weights = expanded
    inverted_index = [np.where(weights[:, i] != 0)[0] for i in range(all_num)]

    jaccard_dist = np.zeros_like(original_dist, dtype=np.float32)
    for i in range(query_num):
        temp_min = np.zeros(shape=[1, all_num], dtype=np.float32)
        non_zero = np.where(weights[i, :] != 0)[0]
        images = [inverted_index[index] for index in non_zero]
        for j in range(len(non_zero)):
            temp_min[0, images[j]] = temp_min[0, images[j]] + np.minimum(weights[i, non_zero[j]],
                                                                         weights[images[j], non_zero[j]])
        jaccard_dist[i] = 1 - temp_min / (2.0 - temp_min)

    final_dist = jaccard_dist * (1 - lambda_value) + original_dist * lambda_value
    return final_dist[:query_num, query_num:]
