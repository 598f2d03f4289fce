"""Copying a gallery between backends (FAISS files and Milvus), with its manifest and every item's metadata, and
checking the copy item by item.

Items keep their path, identity, camera, modality, label and timestamp, and their embeddings (as the source stores
them: exactly for flat, hnsw and ivfflat; ivfpq's 8-bit vectors); the manifest keeps the model that made them
(backbone, checkpoint digest, embedding size) and what they came from. Item ids are the target's own (a database
gives its own ids), so a copy is checked by path.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from reid.index.backends import build_gallery_at, open_store
from reid.index.gallery import Gallery
from reid.index.metadata import path_key
from reid.index.milvus import MilvusGallery
from reid.index.settings import GalleryError, IndexSettings

CARRIED = ("path", "pid", "camid", "modality", "label", "timestamp")
TOLERANCE = 1e-6


def items_of(gallery: Gallery | MilvusGallery) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Every live item of a gallery: its embeddings (as stored) and metadata rows."""
    if isinstance(gallery, MilvusGallery):
        rows, vectors = [], []
        for row in gallery._rows("id >= 0", ["id", "vector", "path", "pid", "camid", "modality", "label",
                                              "timestamp"]):
            vectors.append(np.asarray(row.pop("vector"), np.float32))
            rows.append(_milvus_row(row))
        dim = gallery.manifest.embedding_size
        return (np.stack(vectors) if vectors else np.zeros((0, dim), np.float32)), rows
    from reid.index.factory import stored_vectors

    live = np.flatnonzero(~gallery.table.removed)
    vectors = np.concatenate([stored_vectors(gallery.index, live[start:start + 65_536])
                              for start in range(0, len(live), 65_536)]) if len(live) else \
        np.zeros((0, gallery.manifest.embedding_size), np.float32)
    return vectors, [gallery.table.row(int(row)) for row in live]


def _milvus_row(row: dict[str, Any]) -> dict[str, Any]:
    from reid.index.milvus import _row

    return _row(row)


def migrate(source: str, target: str, overwrite: bool = False) -> int:
    """Copy the gallery at ``source`` to ``target`` and check every item; returns how many were copied."""
    origin = open_store(source).current()
    vectors, rows = items_of(origin)
    if not len(rows):
        raise GalleryError(f"--from {source}: the gallery holds no items to copy")
    manifest = origin.manifest
    settings = IndexSettings(**{key: value for key, value in manifest.index.model_dump().items()
                                if key not in ("nlist", "pq_m")})  # the target resolves them for its own size
    metadata = [{key: row.get(key) for key in CARRIED} for row in rows]
    build_gallery_at(target, vectors, metadata, manifest.backbone, settings, manifest.checkpoint_digest,
                     dict(manifest.extra), overwrite)
    check_copy(vectors, rows, open_store(target).current(), target)
    return len(rows)


def check_copy(vectors: np.ndarray, rows: list[dict[str, Any]], copy: Gallery | MilvusGallery, where: str) -> None:
    """Every item of the source is in the copy once, with its metadata and its embedding (within TOLERANCE)."""
    copied_vectors, copied_rows = items_of(copy)
    if len(copied_rows) != len(rows):
        raise GalleryError(f"{where}: {len(copied_rows)} items were copied, not {len(rows)}")
    by_path = {path_key(row["path"]): number for number, row in enumerate(copied_rows)}
    for number, row in enumerate(rows):
        other = by_path.get(path_key(row["path"]))
        if other is None:
            raise GalleryError(f"{where}: {row['path']} was not copied")
        for key in CARRIED:
            if _comparable(row.get(key)) != _comparable(copied_rows[other].get(key)):
                raise GalleryError(f"{where}: {row['path']}: {key} is {copied_rows[other].get(key)!r}, not "
                                   f"{row.get(key)!r}")
        if not np.allclose(copied_vectors[other], vectors[number] / np.linalg.norm(vectors[number]),
                           atol=TOLERANCE, rtol=0):
            raise GalleryError(f"{where}: {row['path']}: its embedding changed in the copy")


def _comparable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value
