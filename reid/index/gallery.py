"""FAISS galleries of re-ID embeddings: build, add, remove, compact, search with filters, save and load.

A ``Gallery`` puts three parts together: a FAISS index (``reid.index.factory``), a columnar metadata table whose
row ``i`` describes FAISS id ``i`` (``reid.index.metadata``), and a directory store with a manifest that ties
the gallery to the model that built it (``reid.index.store``). Removal marks rows as removed; every search
excludes them, as it does the items the modality and camera filters leave out; ``compact`` rebuilds without them.

Filters never cost results: a search returns top-k items whenever k items qualify. When at most
``EXHAUSTIVE_LIMIT`` items qualify they are compared with the query one by one (exactly, for flat, hnsw and
ivfflat; on its 8-bit vectors for ivfpq); when more qualify, the index searches only them (a FAISS
``IDSelector``), and a query that an approximate index answers with fewer than k is answered one by one.
"""
from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from reid.data.samples import MODALITIES, Modality, Sample
from reid.index.factory import (
    build_index,
    empty_copy,
    gpu_available,
    normalised,
    search_parameters,
    stored_vectors,
    to_gpu,
)
from reid.index.metadata import UNKNOWN, MetadataTable, path_key
from reid.index.settings import GalleryError, IndexSettings
from reid.index.store import Manifest, gallery_lock, load_gallery, save_gallery

EXHAUSTIVE_LIMIT = 16_384  # qualifying items compared one by one: a (queries x items x dim) product


def _camera_set(cameras: int | Collection[int] | None) -> frozenset[int] | None:
    """A query's excluded cameras: none, one camera, or several."""
    if cameras is None:
        return None
    return frozenset([int(cameras)] if isinstance(cameras, (int, np.integer)) else map(int, cameras)) or None


def query_vectors(queries: np.ndarray, embedding_size: int, top_k: int) -> np.ndarray:
    """A search's queries as L2-normalised float32 rows of the gallery's embedding size, with top_k checked: what
    every backend checks first."""
    vectors = normalised(queries, "queries")
    if vectors.shape[1] != embedding_size:
        raise GalleryError(f"query embeddings have size {vectors.shape[1]}, the gallery {embedding_size}")
    if top_k < 1:
        raise GalleryError(f"top_k must be at least 1, got {top_k}")
    return vectors


def exclusion_groups(exclude_camids: Sequence[int | Collection[int] | None] | None,
                     count: int) -> dict[frozenset[int] | None, list[int]]:
    """The rows of ``count`` queries grouped by the cameras each excludes, so that each group is searched with one
    filter."""
    exclude = [_camera_set(c) for c in exclude_camids] if exclude_camids is not None else [None] * count
    if len(exclude) != count:
        raise GalleryError(f"{len(exclude)} cameras to exclude for {count} queries")
    groups: dict[frozenset[int] | None, list[int]] = {}
    for row, excluded in enumerate(exclude):
        groups.setdefault(excluded, []).append(row)
    return groups


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
    item_id: int = -1  # the item's own id (it names the item as long as the item is in the gallery)

    def sample(self) -> Sample:
        """The hit as a Sample (unknown pid / camid as -1), e.g. to draw it."""
        path = tuple(self.path) if isinstance(self.path, list) else self.path
        modality: Modality = self.modality if self.modality in MODALITIES else "vis"
        return Sample(path, UNKNOWN if self.pid is None else self.pid, UNKNOWN if self.camid is None else self.camid,
                      modality)


class Gallery:
    """A FAISS index of normalised embeddings plus one metadata row per item.

    Args:
        manifest: Model identity, embedding size and index settings.
        settings: Index type and parameters.
        index: The FAISS index (ids are metadata row numbers).
        table: The metadata.
        use_gpu: Unfiltered searches run on the GPU through faiss-gpu (index types whose ``gpu`` says so) when it is
            installed and sees a GPU; filtered ones run on the CPU (FAISS's GPU indexes take no ID selectors).
    """

    def __init__(self, manifest: Manifest, settings: IndexSettings, index: faiss.Index, table: MetadataTable,
                 use_gpu: bool = False) -> None:
        self.manifest = manifest
        self.settings = settings
        self.index = index
        self.table = table
        self.use_gpu = use_gpu and gpu_available() and settings.kind.gpu
        self._gpu_index: faiss.Index | None = None

    @classmethod
    def build(cls, embeddings: np.ndarray, metadata: Sequence[dict[str, Any]], backbone: str,
              settings: IndexSettings | None = None, checkpoint_digest: str | None = None,
              use_gpu: bool = False, source: dict[str, Any] | None = None) -> Gallery:
        """A gallery over ``embeddings`` (one metadata row each: path, pid, camid, modality, label).

        Args:
            source: What the items came from (e.g. ``{"dataset": "llcm", "split": "gallery"}``), kept in the
                manifest's ``extra``.
        """
        vectors = normalised(embeddings)
        if len(vectors) == 0:
            raise GalleryError("cannot build a gallery from zero embeddings")
        if len(vectors) != len(metadata):
            raise GalleryError(f"{len(vectors)} embeddings but {len(metadata)} metadata rows")
        settings = (settings or IndexSettings()).resolved(len(vectors), vectors.shape[1])
        manifest = Manifest(backbone=backbone, embedding_size=vectors.shape[1], index=settings.model_dump(),
                            factory=settings.factory_string(), checkpoint_digest=checkpoint_digest, next_item_id=0,
                            extra=dict(source or {}))
        gallery = cls(manifest, settings, build_index(vectors, settings), MetadataTable(), use_gpu)
        gallery._append(vectors, MetadataTable.from_rows(metadata))
        return gallery

    def add(self, embeddings: np.ndarray, metadata: Sequence[dict[str, Any]]) -> list[int]:
        """Add the items that are not in the gallery yet (by path, relative or absolute); returns the new items'
        ids. The index's training (ivfpq) is kept."""
        vectors = normalised(embeddings)
        if vectors.shape[1] != self.manifest.embedding_size:
            raise GalleryError(f"embeddings of size {vectors.shape[1]} cannot join a gallery of size "
                               f"{self.manifest.embedding_size}")
        if len(vectors) != len(metadata):
            raise GalleryError(f"{len(vectors)} embeddings but {len(metadata)} metadata rows")
        table = MetadataTable.from_rows(metadata)
        seen = {path_key(self.table.paths[i]) for i in np.flatnonzero(~self.table.removed)}
        new = []
        for row, path in enumerate(table.paths):
            key = path_key(path)
            if key not in seen:
                seen.add(key)
                new.append(row)
        if not new:
            return []
        return self._append(vectors[new], table.select(np.asarray(new)))

    def _append(self, vectors: np.ndarray, table: MetadataTable) -> list[int]:
        table.ids[:] = -1  # the gallery gives the ids
        self.manifest.next_item_id = table.ids_from(self.manifest.next_item_id or 0)
        self.index.add(vectors)
        self.table.extend(table)
        self.manifest.items = self.live_count
        self._gpu_index = None
        return [int(i) for i in table.ids]

    def remove(self, paths: Iterable[str]) -> tuple[int, list[str]]:
        """Remove the live items whose path (a tracklet: first frame) is in ``paths``, relative or absolute;
        returns how many were removed and the paths that named no live item."""
        paths = list(paths)
        rows = self.table.live_rows_with_paths(paths)
        found = {path_key(self.table.paths[row]) for row in rows}
        self.table.removed[rows] = True
        self.manifest.items = self.live_count
        return len(rows), [path for path in paths if path_key(path) not in found]

    def remove_ids(self, ids: Iterable[int]) -> tuple[int, list[int]]:
        """Remove the live items with these ids; returns how many were removed and the ids that named no live
        item (never given, or removed already)."""
        ids = [int(i) for i in ids]
        rows = self.table.rows_of(ids)
        live = [row for row in rows.values() if not self.table.removed[row]]
        self.table.removed[live] = True
        self.manifest.items = self.live_count
        found = {int(self.table.ids[row]) for row in live}
        return len(live), [item for item in ids if item not in found]

    def item(self, item_id: int) -> dict[str, Any] | None:
        """The metadata row of a live item, or None when no live item has that id."""
        row = self.table.rows_of([item_id]).get(int(item_id))
        return None if row is None or self.table.removed[row] else self.table.row(row)

    def compact(self) -> Gallery:
        """A new gallery without removed items. The index keeps what it learnt (IVF centroids, PQ codebooks) and
        takes back the vectors it stored, so compacting never needs a training (exact for flat, hnsw and ivfflat;
        ivfpq keeps its 8-bit vectors)."""
        keep = np.flatnonzero(~self.table.removed)
        if not len(keep):
            raise GalleryError("every item was removed; nothing to compact")
        index = empty_copy(self.index)
        for start in range(0, len(keep), 65_536):
            index.add(stored_vectors(self.index, keep[start:start + 65_536]))
        manifest = self.manifest.model_copy(update={"items": len(keep)})
        return Gallery(manifest, self.settings, index, self.table.select(keep), self.use_gpu)

    @property
    def live_count(self) -> int:
        return self.table.live_count

    @property
    def removed_count(self) -> int:
        return len(self.table) - self.live_count

    def search(
            self,
            queries: np.ndarray,
            top_k: int = 10,
            modality: str | None = None,
            exclude_camids: Sequence[int | Collection[int] | None] | None = None,
            camids: Collection[int] | None = None,
            since: int | None = None,
            until: int | None = None,
            pid: int | None = None,
    ) -> list[list[SearchHit]]:
        """Top-k items per query, best first.

        Args:
            queries: (n, dim) query embeddings (normalised here).
            top_k: Items per query.
            modality: Only items of this modality ("vis" or "ir").
            exclude_camids: Per query, a camera (or cameras) whose items are skipped, e.g. the query's own camera;
                items of unknown camera are kept (``MetadataTable.allowed``).
            camids: Only items known to be from these cameras.
            since: Only items seen at or after this time (seconds since 1970 UTC; items without one are left out).
            until: Only items seen at or before this time.
            pid: Only the items of this identity.
        """
        vectors = query_vectors(queries, self.manifest.embedding_size, top_k)
        if self.live_count == 0:
            raise GalleryError("the gallery is empty")
        if exclude_camids is None and modality is None and camids is None and since is None and until is None \
                and pid is None and self.removed_count == 0:
            # nothing to filter: one plain search, no selector
            scores, ids = self._searchable().search(vectors, min(top_k, self.live_count),
                                                    params=search_parameters(self.settings, None))
            return [self._hits(score_row, id_row) for score_row, id_row in zip(scores, ids, strict=True)]
        results: list[list[SearchHit]] = [[] for _ in range(len(vectors))]
        for excluded, rows in exclusion_groups(exclude_camids, len(vectors)).items():
            allowed = np.flatnonzero(self.table.allowed(modality, excluded, camids, since, until, pid))
            if not len(allowed):
                continue
            k = min(top_k, len(allowed))
            if self.settings.kind.exact or len(allowed) > EXHAUSTIVE_LIMIT:
                selector = faiss.IDSelectorBatch(allowed.astype(np.int64))
                scores, ids = self.index.search(vectors[rows], k, params=search_parameters(self.settings, selector))
                short = [i for i, id_row in enumerate(ids) if (id_row >= 0).sum() < k]
            else:
                scores, ids, short = None, None, list(range(len(rows)))
            if short:  # compare the qualifying items one by one
                exhaustive = self._exhaustive(vectors[[rows[i] for i in short]], allowed, k)
                if scores is None:
                    scores, ids = exhaustive
                else:
                    scores[short], ids[short] = exhaustive
            for query, score_row, id_row in zip(rows, scores, ids, strict=True):
                results[query] = self._hits(score_row, id_row)
        return results

    def _exhaustive(self, queries: np.ndarray, allowed: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The top-k of ``allowed`` rows by inner product with the stored vectors, in chunks (ties: lower row)."""
        best_scores = np.full((len(queries), 0), -np.inf, np.float32)
        best_ids = np.zeros((len(queries), 0), np.int64)
        for start in range(0, len(allowed), EXHAUSTIVE_LIMIT):
            chunk = allowed[start:start + EXHAUSTIVE_LIMIT]
            scores = np.concatenate([best_scores, queries @ stored_vectors(self.index, chunk).T], axis=1)
            ids = np.concatenate([best_ids, np.broadcast_to(chunk, (len(queries), len(chunk)))], axis=1)
            order = np.lexsort((ids, -scores), axis=1)[:, :k]  # best score first, ties by row
            best_scores = np.take_along_axis(scores, order, axis=1)
            best_ids = np.take_along_axis(ids, order, axis=1)
        return best_scores, best_ids

    def _hits(self, scores: np.ndarray, ids: np.ndarray) -> list[SearchHit]:
        hits = []
        for rank, (score, row) in enumerate(zip(scores, ids, strict=True), 1):
            if row >= 0:
                item = self.table.row(int(row))
                hits.append(SearchHit(rank, float(score), item["path"], item["pid"], item["camid"], item["modality"],
                                      item["label"], item["id"]))
        return hits

    def _searchable(self) -> faiss.Index:
        if not self.use_gpu:
            return self.index
        if self._gpu_index is None:
            self._gpu_index = to_gpu(self.index)
        return self._gpu_index

    def save(self, directory: str | Path) -> Path:
        """Write the gallery atomically (see ``reid.index.store``)."""
        return save_gallery(directory, self.manifest, self.index, self.table)

    @classmethod
    def load(cls, directory: str | Path, use_gpu: bool = False) -> Gallery:
        stored = load_gallery(directory)
        return cls(stored.manifest, stored.settings, stored.index, stored.table, use_gpu)

    @classmethod
    @contextmanager
    def updating(cls, directory: str | Path, waiting: Callable[[str], None] | None = None) -> Iterator[Gallery]:
        """Load a gallery for a change and save it when the block ends without an error, holding the gallery's
        lock throughout, so concurrent writers take turns.

        Args:
            waiting: Called once, with the holder's description, if another process or thread holds the lock.
        """
        with gallery_lock(directory, waiting=waiting):
            gallery = cls.load(directory)
            yield gallery
            gallery.save(directory)

    def check_model(self, backbone: str, embedding_size: int, checkpoint_digest: str | None) -> None:
        """Refuse to query with a model other than the one that built the gallery, saying what differs."""
        self.manifest.check_model(backbone, embedding_size, checkpoint_digest)

    def cameras(self) -> list[int]:
        """The known cameras of the live items."""
        return sorted({int(c) for c in self.table.camids[~self.table.removed] if c != UNKNOWN})

    def unknown_camera_count(self) -> int:
        """Live items whose camera is not known."""
        return int(((self.table.camids == UNKNOWN) & ~self.table.removed).sum())

    def ids_of(self, pid: int | None = None, modality: str | None = None) -> list[int]:
        """Ids of the live items of an identity (and modality)."""
        return [int(i) for i in self.table.ids[self.table.allowed(modality, pid=pid)]]

    def page(self, offset: int, limit: int, modality: str | None = None, camera: int | None = None,
             pid: int | None = None) -> tuple[int, list[dict[str, Any]]]:
        """How many live items pass the filters, and rows ``offset`` .. ``offset + limit`` of them (in the order
        they were added)."""
        rows = np.flatnonzero(self.table.allowed(modality, camids=None if camera is None else [camera], pid=pid))
        return len(rows), [self.table.row(int(row)) for row in rows[offset:offset + limit]]

    def counts_by_modality(self) -> dict[str, int]:
        """Live items per modality ("unknown" for items without one)."""
        live = self.table.modalities[~self.table.removed]
        names, counts = np.unique(live, return_counts=True)
        return {str(name) or "unknown": int(count) for name, count in zip(names, counts, strict=True)}
