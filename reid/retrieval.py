"""Ranking: each query's best gallery items, without those its protocol hides, as rank lists.

What evaluation records per query, what ``reid visualize`` draws (``reid.visualize``), and what the service
shows all come from here.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from reid.data.protocols import Protocol
from reid.data.samples import Sample
from reid.metrics import Metric, pairwise_distance


@dataclass(frozen=True)
class RankList:
    """A query and its best gallery matches, best first."""

    query: Sample
    matches: list[Sample]
    scores: list[float]  # cosine similarity (or negative distance)

    @property
    def correct(self) -> list[bool | None]:
        """Per match: same identity as the query; None for every match when the query's identity is unknown."""
        if self.query.pid < 0:
            return [None] * len(self.matches)
        return [m.pid == self.query.pid for m in self.matches]


def rank_lists(
        query_samples: Sequence[Sample],
        query_embeddings: torch.Tensor,
        gallery_samples: Sequence[Sample],
        gallery_embeddings: torch.Tensor,
        protocol: Protocol,
        top_k: int = 10,
        metric: Metric = "cosine",
) -> list[RankList]:
    """Top-k gallery items of each query, without the items the protocol hides from it (ties by gallery order)."""
    return ranked(query_samples, gallery_samples, pairwise_distance(query_embeddings, gallery_embeddings, metric),
                  protocol, top_k, metric)


def ranked(
        query_samples: Sequence[Sample],
        gallery_samples: Sequence[Sample],
        distances: torch.Tensor,
        protocol: Protocol,
        top_k: int = 10,
        metric: Metric = "cosine",
) -> list[RankList]:
    """Top-k gallery items of each query by a (queries x gallery) distance matrix (smaller is closer; e.g.
    re-ranked), without the items the protocol hides (ties by gallery order)."""
    removed = protocol.removed([s.pid for s in query_samples], [s.camid for s in query_samples],
                               [s.pid for s in gallery_samples], [s.camid for s in gallery_samples])
    order = torch.sort(distances.masked_fill(removed, torch.inf), dim=1, stable=True).indices
    visible = (~removed).sum(1).tolist()
    out = []
    for row, query in enumerate(query_samples):
        top = order[row, :min(top_k, visible[row])].tolist()
        scores = (-distances[row, top] if metric == "euclidean" else 1 - distances[row, top]).tolist()
        out.append(RankList(query, [gallery_samples[i] for i in top], scores))
    return out


def pick_queries(samples: Sequence[Sample], count: int, seed: int = 0) -> list[int]:
    """Indices of ``count`` queries of distinct identities, chosen reproducibly."""
    rng = np.random.default_rng(seed)
    by_pid: dict[int, list[int]] = {}
    for index, sample in enumerate(samples):
        by_pid.setdefault(sample.pid, []).append(index)
    pids = rng.permutation(sorted(by_pid))[:count]
    return [int(rng.choice(by_pid[pid])) for pid in pids]
