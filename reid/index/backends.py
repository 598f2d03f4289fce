"""Where a gallery is kept, behind one interface for the commands and the service: a directory of FAISS files
(``faiss``, the default: embedded, one machine) or a Milvus collection (``milvus``: a database that processes and
machines share, ``reid.index.milvus``). A gallery address says which: ``milvus:...`` is Milvus, anything else a
gallery directory.

A store gives the gallery as it is now (``current``: the FAISS one reloaded only when a save swapped its directory,
the Milvus one a thin handle whose every call asks the database) and a gallery to change (``updating``: the FAISS
one under the gallery's lock, saved when the block ends; Milvus orders its writers itself). Both galleries answer
the same calls (search with filters, add, remove, item, page, counts, check_model) with the same results.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from reid.index.gallery import Gallery
from reid.index.milvus import Address, MilvusGallery, is_milvus
from reid.index.settings import GalleryError, IndexSettings
from reid.index.store import gallery_lock, gallery_path, replace_problems

__all__ = ["FaissStore", "MilvusStore", "build_gallery_at", "is_milvus", "open_store"]


class FaissStore:
    """A gallery directory: loaded once, reloaded when a save has swapped in a new version."""

    backend = "faiss"

    def __init__(self, address: str | Path) -> None:
        self.path = gallery_path(address)
        self._gallery: Gallery | None = None
        self._stamp: tuple[int, int] | None = None

    def __str__(self) -> str:
        return str(self.path)

    def current(self) -> Gallery:
        try:
            status = os.stat(self.path)
            stamp = (status.st_ino, status.st_ctime_ns)
        except FileNotFoundError:
            stamp = None
        if self._gallery is None or stamp != self._stamp:
            self._gallery, self._stamp = Gallery.load(self.path), stamp
        return self._gallery

    @contextmanager
    def updating(self, waiting: Callable[[str], None] | None = None) -> Iterator[Gallery]:
        with Gallery.updating(self.path, waiting=waiting) as gallery:
            yield gallery

    def compact(self, waiting: Callable[[str], None] | None = None) -> tuple[int, int]:
        """Rebuild without removed items; returns (removed items dropped, items left)."""
        with gallery_lock(self.path, waiting=waiting):
            gallery = Gallery.load(self.path)
            removed = gallery.removed_count
            compacted = gallery.compact()
            compacted.save(self.path)
        return removed, compacted.live_count


class MilvusStore:
    """A Milvus collection: nothing held here, every call asks the database."""

    backend = "milvus"

    def __init__(self, address: str) -> None:
        self.address = Address.parse(address)

    def __str__(self) -> str:
        return str(self.address)

    def current(self) -> MilvusGallery:
        return MilvusGallery.open(self.address)

    @contextmanager
    def updating(self, waiting: Callable[[str], None] | None = None) -> Iterator[MilvusGallery]:
        yield MilvusGallery.open(self.address)  # each write saves itself; the database orders concurrent ones

    def compact(self, waiting: Callable[[str], None] | None = None) -> tuple[int, int]:
        gallery = MilvusGallery.open(self.address)
        gallery.compact()
        return 0, gallery.live_count


def open_store(address: str | Path) -> FaissStore | MilvusStore:
    return MilvusStore(str(address)) if is_milvus(address) else FaissStore(address)


def build_gallery_at(address: str | Path, embeddings: np.ndarray, metadata: list[dict[str, Any]], backbone: str,
                     settings: IndexSettings | None, checkpoint_digest: str | None, source: dict | None = None,
                     overwrite: bool = False, use_gpu: bool = False) -> Gallery | MilvusGallery:
    """A new gallery at ``address`` (a FAISS one saved there; a folder that is not a gallery is never replaced)."""
    if is_milvus(address):
        return MilvusGallery.build(str(address), embeddings, metadata, backbone, settings, checkpoint_digest, source,
                                   overwrite)
    from reid.errors import refuse

    gallery = Gallery.build(embeddings, metadata, backbone, settings, checkpoint_digest, use_gpu, source)
    with gallery_lock(address):
        refuse(replace_problems(gallery_path(address), overwrite), GalleryError)
        gallery.save(address)
    return gallery
