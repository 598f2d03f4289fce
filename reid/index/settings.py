"""Index types and their settings (no FAISS needed to read or check them).

* ``flat``: exact search (IndexFlatIP).
* ``hnsw``: graph search (IndexHNSWFlat; ``hnsw_m`` links per node, ``ef_search`` at query time).
* ``ivfpq``: compressed (IVF with ``nlist`` lists and product quantisation, ``nprobe`` lists searched), with a
  refine step that re-ranks ``k_factor * k`` candidates on 8-bit scalar-quantised vectors, so memory stays near
  ``pq_m + dim`` bytes per vector instead of ``4 * dim``. Trained on the gallery itself.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Literal

from reid.errors import ReidError

IndexType = Literal["flat", "hnsw", "ivfpq"]
INDEX_TYPES: tuple[IndexType, ...] = ("flat", "hnsw", "ivfpq")


class GalleryError(ReidError):
    """A gallery cannot be built, read or used as asked."""


@dataclass
class IndexSettings:
    """Index type and its parameters (None: chosen from the data)."""

    type: IndexType = "flat"
    hnsw_m: int = 32
    ef_construction: int = 200
    ef_search: int = 128
    nlist: int | None = None  # default: about sqrt(n), at least 1
    nprobe: int = 64  # with k_factor 16: recall@10 0.961 on 1M x 384 (benchmarks/bench_index.py)
    pq_m: int | None = None  # sub-quantisers; default: dim / 4 (one byte each)
    k_factor: int = 16

    @classmethod
    def from_dict(cls, values: object, source: str) -> IndexSettings:
        """Settings from a manifest's ``index`` entry; unknown keys and wrong types are a GalleryError."""
        if not isinstance(values, dict):
            raise GalleryError(f"{source}: the index settings must be a mapping, got {type(values).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise GalleryError(f"{source}: unknown index setting {', '.join(map(repr, unknown))}")
        settings = cls(**values)
        if settings.type not in INDEX_TYPES:
            raise GalleryError(f"{source}: unknown index type {settings.type!r}")
        for name in ("hnsw_m", "ef_construction", "ef_search", "nprobe", "k_factor", "nlist", "pq_m"):
            value = getattr(settings, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise GalleryError(f"{source}: index setting {name} must be a positive integer, got {value!r}")
        return settings

    def resolved(self, count: int, dim: int) -> IndexSettings:
        if self.type not in INDEX_TYPES:
            raise GalleryError(f"unknown index type {self.type!r}; choose from {', '.join(INDEX_TYPES)}")
        out = IndexSettings(**asdict(self))
        if self.type == "ivfpq":
            out.nlist = self.nlist or max(1, int(math.sqrt(max(count, 1))))
            out.pq_m = self.pq_m or next(m for m in (dim // 4, dim // 8, dim // 2, dim) if m >= 1 and dim % m == 0)
            if dim % out.pq_m:
                raise GalleryError(f"pq_m={out.pq_m} must divide the embedding size {dim}")
        return out

    def factory_string(self) -> str:
        if self.type == "flat":
            return "Flat"
        if self.type == "hnsw":
            return f"HNSW{self.hnsw_m},Flat"
        return f"IVF{self.nlist},PQ{self.pq_m}x8,Refine(SQ8)"

    def minimum_training_vectors(self) -> int:
        # FAISS k-means wants ~39 points per centroid: nlist IVF centroids, 256 PQ centroids per sub-quantiser
        return 39 * max(self.nlist or 1, 256) if self.type == "ivfpq" else 0

    def training_sample_size(self) -> int:
        """Vectors the index is trained on (a random subset beyond this): 64 per centroid is plenty, and
        k-means over every vector of a million-item gallery would take hours on a CPU."""
        return 64 * max(self.nlist or 1, 256)
