"""Rank-k (CMC), mAP and mINP for re-ID retrieval, vectorised over queries and computed in chunks.

Definitions (Ye et al., "Deep Learning for Person Re-identification: A Survey and Outlook"): for one query with
its filtered ranked gallery list and P positives, AP = (1/P) * sum over positive positions i of
(positives within the first i) / i; INP = P / (position of the last positive); CMC(k) = 1 if a positive is within
the first k places (identity de-duplicated for LLCM and SYSU-MM01). Queries without a valid match are excluded
from mAP, mINP and the CMC denominator. Ties in distance are broken by gallery order (a stable sort).

``reid.metrics_reference`` holds the same definitions written per query; the tests hold the two to 1e-6.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from reid.errors import ReidError
from reid.protocols import Protocol, get_protocol, removal_mask

Metric = Literal["cosine", "euclidean"]
ArrayLike = np.ndarray | torch.Tensor | Sequence[int]

# Elements of a (query chunk x gallery) block; bounds the evaluator's temporary memory to a few hundred MB.
_CHUNK_ELEMENTS = 1 << 22


@dataclass(frozen=True)
class RankResult:
    """Retrieval metrics of one query set against one gallery.

    Attributes:
        cmc: CMC curve, cmc[k - 1] = fraction of valid queries matched within the first k places, for k up to
            max_rank (or the gallery size if smaller).
        mAP: Mean average precision over valid queries, in [0, 1].
        mINP: Mean inverse negative penalty over valid queries, in [0, 1].
        num_valid_queries: Queries with at least one valid match in the gallery.
    """

    cmc: np.ndarray
    mAP: float
    mINP: float
    num_valid_queries: int

    def rank(self, k: int) -> float:
        """CMC at rank k; beyond the curve's end (a small gallery) the curve has saturated, so its last value."""
        return float(self.cmc[min(k, len(self.cmc)) - 1])


def _as_tensor(values: ArrayLike, device: torch.device, name: str) -> torch.Tensor:
    tensor = torch.as_tensor(np.asarray(values) if not isinstance(values, torch.Tensor) else values)
    if tensor.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {tuple(tensor.shape)}")
    return tensor.to(device=device, dtype=torch.int64)


class RankEvaluator:
    """Accumulates rank metrics over chunks of queries against a fixed gallery (reset / process / evaluate).

    Args:
        gallery_pids: Identity of each gallery item.
        gallery_camids: Camera of each gallery item.
        protocol: Protocol name or object (see ``reid.protocols``).
        max_rank: Length of the CMC curve (capped at the gallery size).
        device: Where to compute; defaults to the device of the first distance chunk.
    """

    def __init__(
            self,
            gallery_pids: ArrayLike,
            gallery_camids: ArrayLike,
            protocol: str | Protocol = "standard",
            max_rank: int = 20,
            device: torch.device | str | None = None,
    ) -> None:
        self.protocol = get_protocol(protocol)
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
        num_gallery = distances.shape[1]
        order = torch.sort(distances, dim=1, stable=True).indices  # ties: gallery order
        matches = gallery_pids[order] == query_pids.unsqueeze(1)
        removed = removal_mask(self.protocol, matches, gallery_camids[order], query_camids)
        keep = torch.ones_like(matches) if removed is None else ~removed
        positives = matches & keep
        num_positives = positives.sum(1)
        valid = num_positives > 0

        rank = keep.cumsum(1, dtype=torch.int32)  # 1-based rank in the filtered list, at kept positions
        hits = positives.cumsum(1, dtype=torch.int32)
        precision = torch.where(positives, hits.double() / rank.double(), 0.0)
        average_precision = precision.sum(1) / num_positives.clamp(min=1)
        last_positive_rank = torch.where(positives, rank, 0).amax(1)
        inverse_negative_penalty = num_positives.double() / last_positive_rank.clamp(min=1).double()

        if self.protocol.dedup_cmc:
            # Rank among distinct identities = identities whose first kept item comes no later than the
            # query's first positive (the query's own identity included).
            position = torch.arange(num_gallery, device=distances.device, dtype=torch.int32).expand_as(order)
            kept_position = torch.where(keep, position, num_gallery)
            first_seen = torch.full((len(order), len(self.gallery_ids)), num_gallery, dtype=torch.int32,
                                    device=distances.device)
            first_seen.scatter_reduce_(1, gallery_id_index[order], kept_position, reduce="amin")
            first_positive = torch.where(positives, position, num_gallery).amin(1, keepdim=True)
            first_rank = (first_seen <= first_positive).sum(1)
        else:
            first_rank = torch.where(positives, rank, num_gallery + 1).amin(1)

        self._ap_sum += float(average_precision[valid].sum())
        self._inp_sum += float(inverse_negative_penalty[valid].sum())
        self._valid += int(valid.sum())
        self._queries += len(valid)
        first_rank = first_rank[valid].clamp(max=self.max_rank + 1) - 1
        self._first_hits += torch.bincount(first_rank, minlength=self.max_rank + 1).cpu()

    def evaluate(self) -> RankResult:
        if self._valid == 0:
            raise ReidError(f"none of the {self._queries} queries has a valid match in the gallery")
        cmc = self._first_hits[:self.max_rank].cumsum(0).double() / self._valid
        return RankResult(cmc.numpy(), self._ap_sum / self._valid, self._inp_sum / self._valid, self._valid)


def evaluate_rank(
        distmat: np.ndarray | torch.Tensor,
        q_pids: ArrayLike,
        g_pids: ArrayLike,
        q_camids: ArrayLike,
        g_camids: ArrayLike,
        protocol: str | Protocol = "standard",
        max_rank: int = 20,
) -> RankResult:
    """Rank metrics of a (queries x gallery) distance matrix (smaller is closer) under ``protocol``.

    The work is done in chunks of queries with torch, on the matrix's device (CUDA when it is there).
    """
    distmat = torch.as_tensor(distmat)
    evaluator = RankEvaluator(g_pids, g_camids, protocol, max_rank, device=distmat.device)
    evaluator.process(distmat, q_pids, q_camids)
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


def evaluate_features(
        query_features: torch.Tensor,
        gallery_features: torch.Tensor,
        q_pids: ArrayLike,
        g_pids: ArrayLike,
        q_camids: ArrayLike,
        g_camids: ArrayLike,
        protocol: str | Protocol = "standard",
        metric: Metric = "cosine",
        max_rank: int = 20,
) -> RankResult:
    """Rank metrics straight from features: distances are computed one chunk of queries at a time, so the
    memory is O(chunk x gallery) and a 100k x 100k evaluation never holds a dense matrix."""
    query_features, gallery_features = torch.as_tensor(query_features), torch.as_tensor(gallery_features)
    if query_features.shape[1:] != gallery_features.shape[1:]:
        raise ValueError(f"query features {tuple(query_features.shape)} and gallery features "
                         f"{tuple(gallery_features.shape)} differ in size")
    evaluator = RankEvaluator(g_pids, g_camids, protocol, max_rank, device=gallery_features.device)
    q_pids = _as_tensor(q_pids, gallery_features.device, "q_pids")
    q_camids = _as_tensor(q_camids, gallery_features.device, "q_camids")
    step = max(1, _CHUNK_ELEMENTS // len(gallery_features))
    for start in range(0, len(query_features), step):
        stop = start + step
        distances = pairwise_distance(query_features[start:stop].to(gallery_features.device), gallery_features,
                                      metric)
        evaluator.process(distances, q_pids[start:stop], q_camids[start:stop])
    return evaluator.evaluate()
