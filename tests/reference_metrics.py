"""Straightforward per-query implementations of the metrics and of k-reciprocal re-ranking.

They follow specs/datasets.md and Zhong et al. (CVPR 2017) line by line and are slow on purpose: the tests use
them as the oracle for ``reid.metrics`` and ``reid.rerank``, and benchmarks/bench_metrics.py as the baseline.
"""
from __future__ import annotations

import numpy as np

from reid.metrics import RankResult
from reid.protocols import Protocol, get_protocol


def evaluate_rank_reference(
        distmat: np.ndarray,
        q_pids: np.ndarray,
        g_pids: np.ndarray,
        q_camids: np.ndarray,
        g_camids: np.ndarray,
        protocol: str | Protocol = "standard",
        max_rank: int = 20,
) -> RankResult:
    protocol = get_protocol(protocol)
    num_queries, num_gallery = distmat.shape
    max_rank = min(max_rank, num_gallery)
    cmc_sum = np.zeros(max_rank)
    average_precisions, inverse_negative_penalties = [], []
    for q in range(num_queries):
        order = np.argsort(distmat[q], kind="stable")  # ties broken by gallery order
        ranked_pids, ranked_camids = g_pids[order], g_camids[order]
        if protocol.removal == "same_pid_and_camera":
            removed = (ranked_pids == q_pids[q]) & (ranked_camids == q_camids[q])
        elif protocol.removal == "cam3_query_drops_cam2":
            removed = (ranked_camids == 2) if q_camids[q] == 3 else np.zeros(num_gallery, bool)
        else:
            removed = np.zeros(num_gallery, bool)
        ranked_pids = ranked_pids[~removed]
        match = ranked_pids == q_pids[q]
        if not match.any():
            continue  # no valid match: left out of mAP, mINP and the CMC denominator
        positions = np.flatnonzero(match) + 1  # 1-based places of the positives
        num_positives = len(positions)
        average_precisions.append(np.sum(np.arange(1, num_positives + 1) / positions) / num_positives)
        inverse_negative_penalties.append(num_positives / positions[-1])
        if protocol.dedup_cmc:
            identities = list(dict.fromkeys(ranked_pids.tolist()))  # first occurrence of each identity, in order
            first = identities.index(q_pids[q]) + 1
        else:
            first = positions[0]
        for k in range(1, max_rank + 1):
            cmc_sum[k - 1] += first <= k
    valid = len(average_precisions)
    return RankResult(cmc_sum / valid, float(np.mean(average_precisions)), float(np.mean(inverse_negative_penalties)),
                      valid)


def re_ranking_reference(
        q_g_dist: np.ndarray,
        q_q_dist: np.ndarray,
        g_g_dist: np.ndarray,
        k1: int = 20,
        k2: int = 6,
        lambda_value: float = 0.3,
) -> np.ndarray:
    """k-reciprocal re-ranking as in the authors' code, with a stable sort for reproducible ties."""
    original_dist = np.concatenate([np.concatenate([q_q_dist, q_g_dist], axis=1),
                                    np.concatenate([q_g_dist.T, g_g_dist], axis=1)], axis=0)
    original_dist = np.power(original_dist, 2).astype(np.float32)
    original_dist = np.transpose(1.0 * original_dist / np.max(original_dist, axis=0))
    weights = np.zeros_like(original_dist).astype(np.float32)
    initial_rank = np.argsort(original_dist, kind="stable").astype(np.int32)
    query_num = q_g_dist.shape[0]
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


def evaluate_rank_loop(
        distmat: np.ndarray,
        q_pids: np.ndarray,
        g_pids: np.ndarray,
        q_camids: np.ndarray,
        g_camids: np.ndarray,
        protocol: str | Protocol = "llcm",
        max_rank: int = 20,
) -> RankResult:
    """The straightforward per-query loop of the public VI-ReID evaluation scripts: argsort every row, then for
    each query filter, de-duplicate identities with np.unique and a list comprehension, and accumulate AP over
    the gallery in Python. The benchmarks' peer (benchmarks/bench_metrics.py); same numbers as above."""
    protocol = get_protocol(protocol)
    num_queries, num_gallery = distmat.shape
    max_rank = min(max_rank, num_gallery)
    indices = np.argsort(distmat, axis=1, kind="stable")
    ranked_pids = g_pids[indices]
    matches = (ranked_pids == q_pids[:, np.newaxis]).astype(np.int32)
    all_cmc, all_ap, all_inp, valid = [], [], [], 0
    for q in range(num_queries):
        order = indices[q]
        if protocol.removal == "same_pid_and_camera":
            remove = (g_pids[order] == q_pids[q]) & (g_camids[order] == q_camids[q])
        elif protocol.removal == "cam3_query_drops_cam2":
            remove = (q_camids[q] == 3) & (g_camids[order] == 2)
        else:
            remove = np.zeros(num_gallery, dtype=bool)
        keep = np.invert(remove)
        raw = matches[q][keep]
        if protocol.dedup_cmc:
            kept_pids = ranked_pids[q][keep]
            first = np.unique(kept_pids, return_index=True)[1]
            distinct = [kept_pids[index] for index in sorted(first)]
            cmc = (np.asarray(distinct) == q_pids[q]).astype(np.int32).cumsum()
        else:
            cmc = raw.cumsum()
        if not np.any(raw):
            continue
        cmc = np.minimum(cmc, 1)
        all_cmc.append([cmc[min(k, len(cmc) - 1)] for k in range(max_rank)])
        positives = np.where(raw == 1)[0]
        running = raw.cumsum()
        all_inp.append(running[positives.max()] / (positives.max() + 1.0))
        precision = [hits / (i + 1.0) for i, hits in enumerate(running)]
        all_ap.append(np.sum(np.asarray(precision) * raw) / raw.sum())
        valid += 1
    return RankResult(np.asarray(all_cmc, dtype=np.float64).sum(0) / valid, float(np.mean(all_ap)),
                      float(np.mean(all_inp)), valid)
