"""k-reciprocal re-ranking (Zhong et al., "Re-ranking Person Re-identification with k-reciprocal Encoding",
CVPR 2017), vectorised over rows and computed in chunks.

The result equals the authors' per-row loops (``re_ranking_reference`` in tests/reference_metrics.py) up to float
rounding. Memory is O(N^2) float32 for N = queries + gallery (two N x N matrices: the normalised distances and
the k-reciprocal weights), which is the method's own cost; everything else is chunked.
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

# Elements of the largest temporary block (rows x columns x neighbours).
_BLOCK_ELEMENTS = 1 << 24


def _chunks(total: int, per_row: int) -> Iterator[slice]:
    """Row slices of at most _BLOCK_ELEMENTS elements, for rows of ``per_row`` elements."""
    step = max(1, _BLOCK_ELEMENTS // max(1, per_row))
    for start in range(0, total, step):
        yield slice(start, min(start + step, total))


def k_reciprocal_rerank(
        query_gallery: torch.Tensor | np.ndarray,
        query_query: torch.Tensor | np.ndarray,
        gallery_gallery: torch.Tensor | np.ndarray,
        k1: int = 20,
        k2: int = 6,
        lambda_value: float = 0.3,
) -> torch.Tensor:
    """Re-ranked (queries x gallery) distances from query-gallery, query-query and gallery-gallery distances.

    Args:
        query_gallery: Query-gallery distances.
        query_query: Query-query distances.
        gallery_gallery: Gallery-gallery distances.
        k1: Neighbourhood size of the k-reciprocal sets.
        k2: Neighbours averaged in the local query expansion.
        lambda_value: Weight of the original distance in the final one.
    """
    q_g, q_q, g_g = (torch.as_tensor(d, dtype=torch.float32) for d in (query_gallery, query_query, gallery_gallery))
    num_queries, num_all = q_g.shape[0], q_g.shape[0] + q_g.shape[1]
    device = q_g.device
    original = torch.cat([torch.cat([q_q, q_g], 1), torch.cat([q_g.T, g_g], 1)], 0).square_()
    original = (original / original.amax(0)).T.contiguous()  # each column scaled by its max, then transposed
    del q_g, q_q, g_g

    half = int(np.around(k1 / 2))
    depth = max(k1 + 1, k2)
    initial_rank = torch.empty(num_all, depth, dtype=torch.int64, device=device)
    for rows in _chunks(num_all, num_all):
        initial_rank[rows] = torch.sort(original[rows], dim=1, stable=True).indices[:, :depth]

    index = torch.arange(num_all, device=device)[:, None, None]
    forward = initial_rank[:, :k1 + 1]
    reciprocal = (initial_rank[forward][:, :, :k1 + 1] == index).any(2)  # i is among its neighbours' neighbours
    half_forward = initial_rank[:, :half + 1]
    half_reciprocal = (initial_rank[half_forward][:, :, :half + 1] == index).any(2)
    half_size = half_reciprocal.sum(1)

    weights = torch.zeros_like(original)
    for rows in _chunks(num_all, num_all):
        count = rows.stop - rows.start
        members = torch.zeros(count, num_all, dtype=torch.bool, device=device)
        members.scatter_(1, forward[rows], reciprocal[rows])  # forward rows hold distinct indices
        # A reciprocal neighbour brings its own (k1/2)-reciprocal set along when over 2/3 of it is already in.
        candidate_sets = half_forward[forward[rows]]  # (rows, k1 + 1, half + 1)
        candidate_masks = half_reciprocal[forward[rows]]
        overlap = (members.gather(1, candidate_sets.flatten(1)).view_as(candidate_sets) & candidate_masks).sum(2)
        selected = reciprocal[rows] & (overlap > 2 / 3 * half_size[forward[rows]])
        added = candidate_masks & selected.unsqueeze(2)
        linear = (torch.arange(count, device=device)[:, None, None] * num_all + candidate_sets)[added]
        members.view(-1)[linear] = True
        weight = torch.where(members, torch.exp(-original[rows]), 0.0)
        weights[rows] = weight / weight.sum(1, keepdim=True)

    if k2 != 1:
        expanded = torch.empty_like(weights)
        for rows in _chunks(num_all, num_all * k2):
            expanded[rows] = weights[initial_rank[rows, :k2]].mean(1)
        weights = expanded

    # Jaccard distance through sum_k min(V[i, k], V[j, k]); V is sparse, so gather each query's non-zeros.
    query_nonzero = weights[:num_queries] != 0
    width = int(query_nonzero.sum(1).max())
    columns_all = torch.sort(query_nonzero.to(torch.uint8), dim=1, descending=True, stable=True).indices[:, :width]
    del query_nonzero
    gallery_weights = weights[num_queries:]
    jaccard = torch.empty(num_queries, num_all - num_queries, device=device)
    for rows in _chunks(num_queries, width * len(gallery_weights)):
        columns = columns_all[rows]  # padding columns hold zero weight and add nothing to the sum
        shared = torch.minimum(gallery_weights[:, columns], weights[rows].gather(1, columns)).sum(-1).T
        jaccard[rows] = 1 - shared / (2.0 - shared)
    return jaccard * (1 - lambda_value) + original[:num_queries, num_queries:] * lambda_value
