"""FAISS galleries of re-ID embeddings: build, save, load, add, remove and search, with metadata and a manifest.

Embeddings are L2-normalised and searched by inner product (cosine similarity). Index types:

* ``flat``: exact search (IndexFlatIP).
* ``hnsw``: graph search (IndexHNSWFlat; ``hnsw_m`` links per node, ``ef_search`` at query time).
* ``ivfpq``: compressed (IVF with ``nlist`` lists and product quantisation, ``nprobe`` lists searched), with a
  refine step that re-ranks ``k_factor * k`` candidates on 8-bit scalar-quantised vectors, so memory stays near
  ``pq_m + dim`` bytes per vector instead of ``4 * dim``. Trained on the gallery itself.

FAISS ids are row numbers of the metadata. Removal marks rows as removed (a tombstone) and every search excludes
them with an ``IDSelector``, as it does for the modality and camera filters; ``compact`` rebuilds without them.

A gallery directory holds ``index.faiss``, ``metadata.jsonl`` and ``manifest.json`` (format version, backbone,
checkpoint digest, embedding size, normalisation, index type and settings, item count). A save writes a staging
directory and swaps it in, so a crash never replaces a good gallery with a broken one.
"""
from __future__ import annotations

import json
import math
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import faiss
import numpy as np

from reid.errors import ReidError

FORMAT_VERSION = 1
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


@dataclass
class SearchHit:
    """One gallery item returned for a query."""

    rank: int
    score: float  # cosine similarity
    path: str | list[str]
    pid: int | None
    camid: int | None
    modality: str | None
    label: str | None = None


@dataclass
class Manifest:
    """What a gallery is: checked against the model that queries it."""

    backbone: str
    embedding_size: int
    index: dict
    items: int = 0
    checkpoint_digest: str | None = None
    normalization: str = "l2"
    metric: str = "inner_product"
    format_version: int = FORMAT_VERSION
    extra: dict = field(default_factory=dict)


def _normalised(embeddings: np.ndarray | Sequence) -> np.ndarray:
    vectors = np.ascontiguousarray(np.asarray(embeddings, dtype=np.float32))
    if vectors.ndim != 2:
        raise GalleryError(f"embeddings must be (items, dim), got shape {vectors.shape}")
    faiss.normalize_L2(vectors)
    return vectors


class Gallery:
    """A FAISS index of normalised embeddings plus one metadata row per item.

    Args:
        manifest: Model identity, embedding size and index settings.
        settings: Index type and parameters.
        use_gpu: Search on the GPU through faiss-gpu (flat and ivfpq) when available.
    """

    def __init__(self, manifest: Manifest, settings: IndexSettings, use_gpu: bool = False) -> None:
        self.manifest = manifest
        self.settings = settings
        self.metadata: list[dict[str, Any]] = []
        self.removed_count = 0
        self._columns: dict[str, np.ndarray] | None = None  # metadata as arrays, for filters; rebuilt on change
        self.index: faiss.Index | None = None
        self.use_gpu = use_gpu and gpu_available() and settings.type != "hnsw"
        self._search_index: faiss.Index | None = None

    # building ---------------------------------------------------------------------------------------------
    @classmethod
    def build(cls, embeddings: np.ndarray, metadata: Sequence[dict[str, Any]], backbone: str,
              settings: IndexSettings | None = None, checkpoint_digest: str | None = None,
              use_gpu: bool = False) -> Gallery:
        """A gallery over ``embeddings`` (one metadata row each: path, pid, camid, modality, label)."""
        vectors = _normalised(embeddings)
        if len(vectors) == 0:
            raise GalleryError("cannot build a gallery from zero embeddings")
        if len(vectors) != len(metadata):
            raise GalleryError(f"{len(vectors)} embeddings but {len(metadata)} metadata rows")
        settings = (settings or IndexSettings()).resolved(len(vectors), vectors.shape[1])
        needed = settings.minimum_training_vectors()
        if len(vectors) < needed:
            raise GalleryError(f"an ivfpq index with nlist={settings.nlist} needs at least {needed} vectors to train, "
                               f"the gallery has {len(vectors)}; use --type flat or hnsw, or a smaller nlist")
        manifest = Manifest(backbone, vectors.shape[1], asdict(settings), checkpoint_digest=checkpoint_digest)
        gallery = cls(manifest, settings, use_gpu)
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
        gallery.index = index
        gallery._append(vectors, metadata)
        return gallery

    def add(self, embeddings: np.ndarray, metadata: Sequence[dict[str, Any]]) -> None:
        """Add items; the index's training (ivfpq) is kept."""
        vectors = _normalised(embeddings)
        if vectors.shape[1] != self.manifest.embedding_size:
            raise GalleryError(f"embeddings of size {vectors.shape[1]} cannot join a gallery of size "
                               f"{self.manifest.embedding_size}")
        if len(vectors) != len(metadata):
            raise GalleryError(f"{len(vectors)} embeddings but {len(metadata)} metadata rows")
        self._append(vectors, metadata)

    def _append(self, vectors: np.ndarray, metadata: Sequence[dict[str, Any]]) -> None:
        self.index.add(vectors)
        self.metadata.extend({**row, "removed": False} for row in metadata)
        self._columns = None
        self.manifest.items = self.live_count
        self._search_index = None

    def remove(self, paths: Iterable[str]) -> int:
        """Remove the items whose path (or first frame) is in ``paths``; returns how many were removed."""
        wanted = {str(p) for p in paths}
        removed = 0
        for row in self.metadata:
            key = row["path"][0] if isinstance(row["path"], list) else row["path"]
            if not row["removed"] and (key in wanted or row["path"] in wanted):
                row["removed"] = True
                removed += 1
        self.removed_count += removed
        self._columns = None
        self.manifest.items = self.live_count
        return removed

    def compact(self) -> Gallery:
        """A new gallery without removed items (vectors reconstructed from the index; lossy only for ivfpq)."""
        keep = [i for i, row in enumerate(self.metadata) if not row["removed"]]
        if not keep:
            raise GalleryError("every item was removed; nothing to compact")
        vectors = np.stack([self.index.reconstruct(i) for i in keep])
        rows = [{k: v for k, v in self.metadata[i].items() if k != "removed"} for i in keep]
        return Gallery.build(vectors, rows, self.manifest.backbone, self.settings, self.manifest.checkpoint_digest)

    @property
    def live_count(self) -> int:
        return len(self.metadata) - self.removed_count

    # searching --------------------------------------------------------------------------------------------
    def _params(self, selector: faiss.IDSelector | None) -> faiss.SearchParameters | None:
        if self.settings.type == "hnsw":
            return faiss.SearchParametersHNSW(sel=selector, efSearch=self.settings.ef_search)
        if self.settings.type == "ivfpq":
            base = faiss.SearchParametersIVF(sel=selector, nprobe=self.settings.nprobe)
            return faiss.IndexRefineSearchParameters(k_factor=self.settings.k_factor, base_index_params=base)
        return faiss.SearchParameters(sel=selector) if selector is not None else None

    def _metadata_columns(self) -> dict[str, np.ndarray]:
        if self._columns is None:
            rows = self.metadata
            self._columns = {
                "live": np.array([not r["removed"] for r in rows], dtype=bool),
                "modality": np.array([r.get("modality") or "" for r in rows]),
                "camid": np.array([-1 if r.get("camid") is None else r["camid"] for r in rows], dtype=np.int64),
            }
        return self._columns

    def _allowed(self, modality: str | None, exclude_camid: int | None, camids: Sequence[int] | None) -> np.ndarray:
        columns = self._metadata_columns()
        mask = columns["live"].copy()
        if modality is not None:
            mask &= columns["modality"] == modality
        if exclude_camid is not None:
            mask &= columns["camid"] != exclude_camid
        if camids is not None:
            mask &= np.isin(columns["camid"], list(camids))
        return mask

    def search(
            self,
            queries: np.ndarray,
            top_k: int = 10,
            modality: str | None = None,
            exclude_camids: Sequence[int | None] | None = None,
            camids: Sequence[int] | None = None,
    ) -> list[list[SearchHit]]:
        """Top-k items per query, best first.

        Args:
            queries: (n, dim) query embeddings (normalised here).
            top_k: Items per query.
            modality: Only items of this modality ("vis" or "ir").
            exclude_camids: Per query, a camera whose items are skipped (e.g. the query's own camera).
            camids: Only items from these cameras.
        """
        vectors = _normalised(queries)
        if vectors.shape[1] != self.manifest.embedding_size:
            raise GalleryError(f"query embeddings have size {vectors.shape[1]}, "
                               f"the gallery {self.manifest.embedding_size}")
        if self.live_count == 0:
            raise GalleryError("the gallery is empty")
        if exclude_camids is None and modality is None and camids is None and self.live_count == len(self.metadata):
            # nothing to filter: one plain search, no selector
            scores, ids = self._index_for_search().search(vectors, min(top_k, self.live_count),
                                                          params=self._params(None))
            return [[self._hit(rank, float(s), int(i)) for rank, (s, i) in enumerate(zip(r_s, r_i, strict=True), 1)
                     if i >= 0] for r_s, r_i in zip(scores, ids, strict=True)]
        exclude = list(exclude_camids) if exclude_camids is not None else [None] * len(vectors)
        results: list[list[SearchHit]] = [[] for _ in range(len(vectors))]
        groups: dict[int | None, list[int]] = {}
        for row, camid in enumerate(exclude):
            groups.setdefault(camid, []).append(row)
        for camid, rows in groups.items():
            allowed = self._allowed(modality, camid, camids)
            if not allowed.any():
                continue
            k = min(top_k, int(allowed.sum()))
            selector = faiss.IDSelectorBatch(np.flatnonzero(allowed).astype(np.int64))
            scores, ids = self.index.search(vectors[rows], k, params=self._params(selector))
            for query, score_row, id_row in zip(rows, scores, ids, strict=True):
                results[query] = [self._hit(rank, float(s), int(i))
                                  for rank, (s, i) in enumerate(zip(score_row, id_row, strict=True), 1) if i >= 0]
        return results

    def top_k(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """FAISS scores and row numbers of the k best items per query, without filters or metadata."""
        return self._index_for_search().search(_normalised(queries), k, params=self._params(None))

    def _hit(self, rank: int, score: float, row: int) -> SearchHit:
        item = self.metadata[row]
        return SearchHit(rank, score, item["path"], item.get("pid"), item.get("camid"), item.get("modality"),
                         item.get("label"))

    def _index_for_search(self) -> faiss.Index:
        if not self.use_gpu:
            return self.index
        if self._search_index is None:
            self._search_index = faiss.index_cpu_to_all_gpus(self.index)
        return self._search_index

    # files ------------------------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write the gallery to ``directory``: files go to a staging folder that then replaces the old gallery,
        so the directory always holds a complete gallery (the old one until the new one is whole)."""
        directory = Path(directory)
        staging = directory.with_name(f".{directory.name}.saving")
        backup = directory.with_name(f".{directory.name}.old")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        faiss.write_index(self.index, str(staging / "index.faiss"))
        (staging / "metadata.jsonl").write_text("".join(json.dumps(row) + "\n" for row in self.metadata))
        self.manifest.items = self.live_count
        record = asdict(self.manifest) | {"total_rows": len(self.metadata)}
        (staging / "manifest.json").write_text(json.dumps(record, indent=2) + "\n")
        if directory.exists():
            shutil.rmtree(backup, ignore_errors=True)
            directory.rename(backup)
            staging.rename(directory)
            shutil.rmtree(backup)
        else:
            staging.rename(directory)
        return directory

    @classmethod
    def load(cls, directory: str | Path, use_gpu: bool = False) -> Gallery:
        directory = Path(directory)
        manifest_path = directory / "manifest.json"
        backup = directory.with_name(f".{directory.name}.old")
        if not directory.exists() and backup.is_dir():
            raise GalleryError(f"{directory}: a save was interrupted; the previous gallery is intact at {backup}")
        if not manifest_path.is_file():
            raise GalleryError(f"{directory}: not a gallery (no manifest.json)")
        try:
            record = json.loads(manifest_path.read_text())
            total_rows = record.pop("total_rows")
            manifest = Manifest(**record)
        except (json.JSONDecodeError, TypeError, KeyError) as error:
            raise GalleryError(f"{manifest_path}: corrupt manifest ({error})") from None
        if manifest.format_version != FORMAT_VERSION:
            raise GalleryError(f"{manifest_path}: gallery format {manifest.format_version}, this version reads "
                               f"{FORMAT_VERSION}; rebuild the gallery")
        try:
            index = faiss.read_index(str(directory / "index.faiss"))
        except RuntimeError as error:
            raise GalleryError(f"{directory / 'index.faiss'}: truncated or corrupt index file "
                               f"({str(error).splitlines()[0][:200]})") from None
        try:
            metadata = [json.loads(line) for line in (directory / "metadata.jsonl").read_text().splitlines() if line]
        except (OSError, json.JSONDecodeError) as error:
            raise GalleryError(f"{directory / 'metadata.jsonl'}: missing or corrupt metadata ({error})") from None
        if index.ntotal != total_rows or len(metadata) != total_rows:
            raise GalleryError(f"{directory}: index holds {index.ntotal} vectors and metadata {len(metadata)} rows, "
                               f"the manifest says {total_rows}; the gallery is incomplete, rebuild it")
        if index.d != manifest.embedding_size:
            raise GalleryError(f"{directory / 'index.faiss'}: vectors of size {index.d}, the manifest says "
                               f"{manifest.embedding_size}")
        gallery = cls(manifest, IndexSettings(**manifest.index), use_gpu)
        gallery.index, gallery.metadata = index, metadata
        gallery.removed_count = sum(row["removed"] for row in metadata)
        return gallery

    def check_model(self, backbone: str, embedding_size: int, checkpoint_digest: str | None) -> None:
        """Refuse to query with a model other than the one that built the gallery, saying what differs."""
        differences = []
        if backbone != self.manifest.backbone:
            differences.append(f"backbone {backbone!r} vs gallery {self.manifest.backbone!r}")
        if embedding_size != self.manifest.embedding_size:
            differences.append(f"embedding size {embedding_size} vs gallery {self.manifest.embedding_size}")
        if checkpoint_digest != self.manifest.checkpoint_digest:
            differences.append(f"checkpoint {(checkpoint_digest or 'none')[:12]} vs gallery "
                               f"{(self.manifest.checkpoint_digest or 'none')[:12]}")
        if differences:
            raise GalleryError("the query model does not match the gallery: " + "; ".join(differences))


def gpu_available() -> bool:
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0
