"""Rank-k (CMC), mAP and mINP for re-ID retrieval, vectorised over queries and computed in chunks.

Definitions (Ye et al., "Deep Learning for Person Re-identification: A Survey and Outlook"): for one query with
its filtered ranked gallery list and P positives, AP = (1/P) * sum over positive positions i of
(positives within the first i) / i; INP = P / (position of the last positive); CMC(k) = 1 if a positive is within
the first k places (identity de-duplicated for LLCM and SYSU-MM01). Queries without a valid match are excluded
from mAP, mINP and the CMC denominator. Ties in distance are broken by gallery order (a stable sort). Results are
in percent.

``tests/reference_metrics.py`` holds the same definitions written per query; the tests hold the two to 1e-6.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from reid.data.protocols import Protocol, get_protocol
from reid.errors import ReidError

Metric = Literal["cosine", "euclidean"]
ArrayLike = np.ndarray | torch.Tensor | Sequence[int]

# Elements of a (query chunk x gallery) block; bounds the evaluator's temporary memory to a few hundred MB.
_CHUNK_ELEMENTS = 1 << 22


@dataclass(frozen=True)
class RankResult:
    """Retrieval metrics of one query set against one gallery.

    Every figure is in percent (0..100), as reports, checkpoints and papers give them.

    Attributes:
        cmc: CMC curve, cmc[k - 1] = percentage of valid queries matched within the first k places, for k up to
            max_rank (or the gallery size if smaller).
        mAP: Mean average precision over valid queries, in percent.
        mINP: Mean inverse negative penalty over valid queries, in percent.
        num_valid_queries: Queries with at least one valid match in the gallery.
        query_ap: Per query (in order), its average precision in percent; NaN for a query without a valid match
            (only when asked for, ``RankEvaluator(keep_queries=True)``).
        query_first_match: Per query, the place of its first true match in the ranking its CMC counts (1-based;
            identity de-duplicated where the protocol's CMC is); 0 without a valid match.
    """

    cmc: np.ndarray
    mAP: float
    mINP: float
    num_valid_queries: int
    query_ap: np.ndarray | None = None
    query_first_match: np.ndarray | None = None

    def rank(self, k: int) -> float:
        """CMC at rank k (percent); beyond the curve's end (a small gallery) the curve has saturated, so its last
        value."""
        return float(self.cmc[min(k, len(self.cmc)) - 1])


def _as_tensor(values: ArrayLike, device: torch.device, name: str) -> torch.Tensor:
    tensor = torch.as_tensor(np.asarray(values) if not isinstance(values, torch.Tensor) else values)
    if tensor.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {tuple(tensor.shape)}")
    return tensor.to(device=device, dtype=torch.int64)


def _buckets(distances: torch.Tensor, pivots: torch.Tensor, pivot_columns: torch.Tensor,
             padding: torch.Tensor) -> torch.Tensor:
    """For every gallery item, the first pivot (a positive) it comes before in (distance, gallery index)
    order, a pivot counting as coming before itself: (rows, gallery) int32. ``pivots`` are sorted that way per
    row, padding (+inf) last."""
    bucket = torch.searchsorted(pivots, distances, out_int32=True)  # pivots strictly closer
    closest_tied = pivots.gather(1, bucket.clamp(max=pivots.shape[1] - 1).long())
    tied = (closest_tied == distances) & (bucket < pivots.shape[1])
    tied &= ~padding.gather(1, bucket.clamp(max=pivots.shape[1] - 1).long())
    if tied.any():  # equal distances: pivots earlier in the gallery come first
        rows, items = tied.nonzero(as_tuple=True)
        same = (pivots[rows] == distances[rows, items].unsqueeze(1)) & (pivot_columns[rows] < items.unsqueeze(1))
        bucket[rows, items] += same.sum(1).int()
    return bucket


class RankEvaluator:
    """Accumulates rank metrics over chunks of queries against a fixed gallery (reset / process / evaluate).

    Args:
        gallery_pids: Identity of each gallery item.
        gallery_camids: Camera of each gallery item.
        protocol: Protocol name or object (see ``reid.data.protocols``).
        max_rank: Length of the CMC curve (capped at the gallery size).
        device: Where to compute; defaults to the device of the first distance chunk.
        keep_queries: Also keep each query's AP and first-match place (``RankResult.query_ap``).
    """

    def __init__(
            self,
            gallery_pids: ArrayLike,
            gallery_camids: ArrayLike,
            protocol: str | Protocol = "standard",
            max_rank: int = 20,
            device: torch.device | str | None = None,
            keep_queries: bool = False,
    ) -> None:
        self.protocol = get_protocol(protocol)
        self.keep_queries = keep_queries
        self.device = torch.device(device) if device is not None else None
        self.gallery_pids = _as_tensor(gallery_pids, torch.device("cpu"), "gallery_pids")
        self.gallery_camids = _as_tensor(gallery_camids, torch.device("cpu"), "gallery_camids")
        if len(self.gallery_pids) != len(self.gallery_camids):
            raise ValueError(f"{len(self.gallery_pids)} gallery pids but {len(self.gallery_camids)} camids")
        if len(self.gallery_pids) == 0:
            raise ReidError("the gallery is empty")
        self.max_rank = min(max_rank, len(self.gallery_pids))
        # identities as 0..U-1, for the de-duplicated CMC
        self.gallery_ids, self.gallery_id_index = torch.unique(self.gallery_pids, return_inverse=True)
        self.reset()

    def reset(self) -> None:
        self._ap_sum = 0.0
        self._inp_sum = 0.0
        self._valid = 0
        self._queries = 0
        self._first_hits = torch.zeros(self.max_rank + 1, dtype=torch.int64)
        self._per_query: list[tuple[torch.Tensor, torch.Tensor]] = []

    def process(self, distances: torch.Tensor, query_pids: ArrayLike, query_camids: ArrayLike) -> None:
        """Add a (queries x gallery) block of distances (smaller is closer)."""
        device = self.device or distances.device
        distances = torch.as_tensor(distances).to(device)
        query_pids = _as_tensor(query_pids, device, "query_pids")
        query_camids = _as_tensor(query_camids, device, "query_camids")
        if distances.ndim != 2 or distances.shape[1] != len(self.gallery_pids):
            raise ValueError(f"distances must be (queries, {len(self.gallery_pids)}), got {tuple(distances.shape)}")
        if not len(query_pids) == len(query_camids) == distances.shape[0]:
            raise ValueError(f"{distances.shape[0]} distance rows, {len(query_pids)} query pids and "
                             f"{len(query_camids)} query camids")
        gallery = [t.to(device) for t in (self.gallery_pids, self.gallery_camids, self.gallery_id_index)]
        step = max(1, _CHUNK_ELEMENTS // distances.shape[1])
        for start in range(0, distances.shape[0], step):
            stop = start + step
            self._process_chunk(distances[start:stop], query_pids[start:stop], query_camids[start:stop], *gallery)

    def _process_chunk(
            self,
            distances: torch.Tensor,
            query_pids: torch.Tensor,
            query_camids: torch.Tensor,
            gallery_pids: torch.Tensor,
            gallery_camids: torch.Tensor,
            gallery_id_index: torch.Tensor,
    ) -> None:
        # No sort of the gallery. Each query's positives (few) are sorted by (distance, gallery index); one
        # searchsorted puts every gallery item in the bucket of the first positive it precedes, and the running
        # sum of each query's bucket counts is the place of each positive in the filtered ranking. Ties go by
        # gallery order, as a stable sort would order them. Matches and removals become sparse lists.
        num_queries, num_gallery = distances.shape
        device = distances.device
        self._queries += num_queries
        if torch.isnan(distances).any():
            raise ReidError("the distances contain NaN")
        match_rows, match_cols = (query_pids.unsqueeze(1) == gallery_pids.unsqueeze(0)).nonzero(as_tuple=True)
        if self.protocol.hides_only_matches(query_pids, query_camids, gallery_pids, gallery_camids):
            # ask the rule about the few matching pairs only
            hidden = self.protocol.rule(query_pids[match_rows], query_camids[match_rows], gallery_pids[match_cols],
                                        gallery_camids[match_cols])
            removed_rows, removed_cols = match_rows[hidden], match_cols[hidden]
        else:
            removed = self.protocol.removed(query_pids, query_camids, gallery_pids, gallery_camids)
            removed_rows, removed_cols = removed.nonzero(as_tuple=True)
            hidden = removed[match_rows, match_cols]
        match_rows, match_cols = match_rows[~hidden], match_cols[~hidden]
        num_positives = torch.bincount(match_rows, minlength=num_queries)
        valid = num_positives > 0
        if not valid.any():
            if self.keep_queries:
                self._per_query.append((torch.full((num_queries,), torch.nan, dtype=torch.float64),
                                        torch.zeros(num_queries, dtype=torch.int64)))
            return
        # renumber the valid rows 0..rows-1
        new_row = torch.cumsum(valid, 0) - 1
        keep_removed = valid[removed_rows]
        removed_rows, removed_cols = new_row[removed_rows[keep_removed]], removed_cols[keep_removed]
        match_rows = new_row[match_rows]
        distances, num_positives = distances[valid], num_positives[valid]
        rows = len(distances)

        slots = torch.arange(len(match_rows), device=device) - (torch.cumsum(num_positives, 0) - num_positives)[
            match_rows]
        columns = torch.full((rows, int(num_positives.max())), num_gallery, dtype=torch.int64, device=device)
        columns[match_rows, slots] = match_cols  # ascending gallery index per row; padding = num_gallery
        padding = columns == num_gallery
        pivots = torch.where(padding, torch.inf, distances.gather(1, columns.clamp(max=num_gallery - 1)))
        pivots, order = torch.sort(pivots, dim=1, stable=True)  # stable: equal distances keep gallery order
        columns = columns.gather(1, order)
        bucket = _buckets(distances, pivots, columns, padding.gather(1, order))
        counts = torch.zeros(rows, columns.shape[1] + 1, dtype=torch.int64, device=device)
        counts.scatter_add_(1, bucket.long(), torch.ones_like(bucket, dtype=torch.int64))
        if len(removed_rows):  # removed items are not part of the ranking
            removed_bucket = bucket[removed_rows, removed_cols].long()
            counts.index_put_((removed_rows, removed_bucket), torch.full_like(removed_bucket, -1), accumulate=True)
        place = counts[:, :-1].cumsum(1)  # 1-based place of each positive in the filtered ranking

        ranks = torch.arange(1, columns.shape[1] + 1, device=device, dtype=torch.float64)
        real = ranks <= num_positives.unsqueeze(1)
        average_precision = torch.where(real, ranks / place.double().clamp(min=1), 0.0).sum(1) / num_positives
        last_place = place.gather(1, (num_positives - 1).unsqueeze(1)).squeeze(1)
        inverse_negative_penalty = num_positives.double() / last_place.double()

        if self.protocol.dedup_cmc:
            # distinct identities with a kept item before the first positive, plus the query's own identity
            before_first = bucket == 0
            before_first[torch.arange(rows, device=device), columns[:, 0]] = False
            before_first[removed_rows, removed_cols] = False
            seen = torch.zeros(rows, len(self.gallery_ids), dtype=torch.bool, device=device)
            seen.scatter_reduce_(1, gallery_id_index.expand(rows, -1), before_first, reduce="amax")
            first_place = seen.sum(1) + 1
        else:
            first_place = place[:, 0]

        if self.keep_queries:
            query_ap = torch.full((num_queries,), torch.nan, dtype=torch.float64, device=device)
            query_ap[valid] = 100.0 * average_precision
            query_first = torch.zeros(num_queries, dtype=torch.int64, device=device)
            query_first[valid] = first_place
            self._per_query.append((query_ap.cpu(), query_first.cpu()))
        self._ap_sum += float(average_precision.sum())
        self._inp_sum += float(inverse_negative_penalty.sum())
        self._valid += rows
        first_place = first_place.clamp(max=self.max_rank + 1) - 1
        self._first_hits += torch.bincount(first_place, minlength=self.max_rank + 1).cpu()

    def evaluate(self) -> RankResult:
        if self._valid == 0:
            raise ReidError(f"none of the {self._queries} queries has a valid match in the gallery")
        cmc = 100.0 * self._first_hits[:self.max_rank].cumsum(0).double() / self._valid
        per_query = {}
        if self.keep_queries:
            per_query = {"query_ap": torch.cat([ap for ap, _ in self._per_query]).numpy(),
                         "query_first_match": torch.cat([first for _, first in self._per_query]).numpy()}
        return RankResult(cmc.numpy(), 100.0 * self._ap_sum / self._valid, 100.0 * self._inp_sum / self._valid,
                          self._valid, **per_query)


def evaluate_rank(
        distances: np.ndarray | torch.Tensor,
        query_pids: ArrayLike,
        gallery_pids: ArrayLike,
        query_camids: ArrayLike,
        gallery_camids: ArrayLike,
        protocol: str | Protocol = "standard",
        max_rank: int = 20,
        keep_queries: bool = False,
) -> RankResult:
    """Rank metrics of a (queries x gallery) distance matrix (smaller is closer) under ``protocol``.

    The work is done in chunks of queries with torch, on the matrix's device (CUDA when it is there).
    """
    distances = torch.as_tensor(distances)
    evaluator = RankEvaluator(gallery_pids, gallery_camids, protocol, max_rank, device=distances.device,
                              keep_queries=keep_queries)
    evaluator.process(distances, query_pids, query_camids)
    return evaluator.evaluate()


def pairwise_distance(query: torch.Tensor, gallery: torch.Tensor, metric: Metric = "cosine") -> torch.Tensor:
    """(queries x gallery) distances in float32: 1 - cosine similarity, or squared Euclidean distance."""
    query, gallery = query.float(), gallery.float()
    if metric == "cosine":
        return 1.0 - F.normalize(query, dim=1) @ F.normalize(gallery, dim=1).T
    if metric == "euclidean":
        squared = (query * query).sum(1, keepdim=True) + (gallery * gallery).sum(1) - 2.0 * query @ gallery.T
        return squared.clamp_(min=0.0)
    raise ReidError(f"unknown metric {metric!r}; choose cosine or euclidean")


def evaluate_embeddings(
        query_embeddings: torch.Tensor,
        gallery_embeddings: torch.Tensor,
        query_pids: ArrayLike,
        gallery_pids: ArrayLike,
        query_camids: ArrayLike,
        gallery_camids: ArrayLike,
        protocol: str | Protocol = "standard",
        metric: Metric = "cosine",
        max_rank: int = 20,
        keep_queries: bool = False,
) -> RankResult:
    """Rank metrics straight from embeddings: distances are computed one chunk of queries at a time, so the
    memory is O(chunk x gallery) and a 100k x 100k evaluation never holds a dense matrix."""
    query_embeddings, gallery_embeddings = torch.as_tensor(query_embeddings), torch.as_tensor(gallery_embeddings)
    if query_embeddings.shape[1:] != gallery_embeddings.shape[1:]:
        raise ValueError(f"query features {tuple(query_embeddings.shape)} and gallery features "
                         f"{tuple(gallery_embeddings.shape)} differ in size")
    evaluator = RankEvaluator(gallery_pids, gallery_camids, protocol, max_rank, device=gallery_embeddings.device,
                              keep_queries=keep_queries)
    query_pids = _as_tensor(query_pids, gallery_embeddings.device, "query_pids")
    query_camids = _as_tensor(query_camids, gallery_embeddings.device, "query_camids")
    step = max(1, _CHUNK_ELEMENTS // len(gallery_embeddings))
    for start in range(0, len(query_embeddings), step):
        stop = start + step
        distances = pairwise_distance(query_embeddings[start:stop].to(gallery_embeddings.device), gallery_embeddings,
                                      metric)
        evaluator.process(distances, query_pids[start:stop], query_camids[start:stop])
    return evaluator.evaluate()
