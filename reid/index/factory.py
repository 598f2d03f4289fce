"""FAISS indexes of L2-normalised embeddings searched by inner product (cosine similarity): settings, building,
search parameters, GPU copies, and the plain exact search that evaluation uses.

Index types:

* ``flat``: exact search (IndexFlatIP).
* ``hnsw``: graph search (IndexHNSWFlat; ``hnsw_m`` links per node, ``ef_search`` at query time).
* ``ivfpq``: compressed (IVF with ``nlist`` lists and product quantisation, ``nprobe`` lists searched), with a
  refine step that re-ranks ``k_factor * k`` candidates on 8-bit scalar-quantised vectors, so memory stays near
  ``pq_m + dim`` bytes per vector instead of ``4 * dim``. Trained on the gallery itself.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Literal

import faiss
import numpy as np

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


def normalised(embeddings: np.ndarray | Sequence) -> np.ndarray:
    """Embeddings as a contiguous float32 (items, dim) array with unit rows."""
    vectors = np.ascontiguousarray(np.asarray(embeddings, dtype=np.float32))
    if vectors.ndim != 2:
        raise GalleryError(f"embeddings must be (items, dim), got shape {vectors.shape}")
    faiss.normalize_L2(vectors)
    return vectors


def build_index(vectors: np.ndarray, settings: IndexSettings) -> faiss.Index:
    """An empty index of ``settings.type`` for vectors like ``vectors``, trained on them where it needs training
    (``settings`` must be resolved)."""
    needed = settings.minimum_training_vectors()
    if len(vectors) < needed:
        raise GalleryError(f"an ivfpq index with nlist={settings.nlist} needs at least {needed} vectors to train, "
                           f"the gallery has {len(vectors)}; use --type flat or hnsw, or a smaller nlist")
    index = faiss.index_factory(vectors.shape[1], settings.factory_string(), faiss.METRIC_INNER_PRODUCT)
    if settings.type == "hnsw":
        index.hnsw.efConstruction = settings.ef_construction
    if settings.type == "ivfpq":
        ivfpq = faiss.downcast_index(faiss.downcast_index(index).base_index)
        # polysemous codes only serve Hamming pre-filtering, which this index does not use, and their
        # training was 3/4 of the build time; 10 k-means iterations per codebook keep recall (measured)
        ivfpq.do_polysemous_training = False
        ivfpq.pq.cp.niter = 10
    if not index.is_trained:
        sample = settings.training_sample_size()
        rows = np.random.default_rng(0).choice(len(vectors), sample, replace=False) if len(vectors) > sample \
            else slice(None)
        index.train(vectors[rows])
    return index


def search_parameters(settings: IndexSettings, selector: faiss.IDSelector | None) -> faiss.SearchParameters | None:
    """Per-search parameters of the index type, restricted to ``selector``'s ids when given."""
    if settings.type == "hnsw":
        return faiss.SearchParametersHNSW(sel=selector, efSearch=settings.ef_search)
    if settings.type == "ivfpq":
        base = faiss.SearchParametersIVF(sel=selector, nprobe=settings.nprobe)
        return faiss.IndexRefineSearchParameters(k_factor=settings.k_factor, base_index_params=base)
    return faiss.SearchParameters(sel=selector) if selector is not None else None


def gpu_available() -> bool:
    """faiss-gpu is installed and sees a GPU."""
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def to_gpu(index: faiss.Index) -> faiss.Index:
    """A copy of ``index`` on every GPU (faiss-gpu)."""
    return faiss.index_cpu_to_all_gpus(index)


def exact_search(gallery: np.ndarray, use_gpu: bool = False) -> Callable[[np.ndarray, int], tuple[np.ndarray,
                                                                                                   np.ndarray]]:
    """Exact cosine search over ``gallery``: a function (queries, k) -> (scores, row numbers), best first.

    No metadata, filters or persistence: what an evaluation needs. On the GPU when faiss-gpu is installed and
    ``use_gpu`` is set.
    """
    vectors = normalised(gallery)
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    if use_gpu and gpu_available():
        index = to_gpu(index)

    def search(queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return index.search(normalised(queries), k)

    return search
