"""FAISS galleries of re-ID embeddings: index settings and factory, a columnar metadata table, a directory store,
and the ``Gallery`` that puts them together (see the modules for each part).

The names backed by FAISS are imported on first use, so ``reid.index.INDEX_TYPES`` (the command line's choices)
costs no FAISS import.
"""
from importlib import import_module

from reid.index.settings import INDEX_TYPES, GalleryError, IndexKind, IndexSettings

_LAZY = {"Gallery": "reid.index.gallery", "SearchHit": "reid.index.gallery", "MetadataTable": "reid.index.metadata",
         "Manifest": "reid.index.store", "FORMAT_VERSION": "reid.index.store", "gallery_lock": "reid.index.store",
         "exact_search": "reid.index.factory", "gpu_available": "reid.index.factory"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'reid.index' has no attribute {name!r}")


__all__ = ["FORMAT_VERSION", "INDEX_TYPES", "Gallery", "GalleryError", "IndexKind", "IndexSettings", "Manifest",
           "MetadataTable", "SearchHit", "exact_search", "gallery_lock", "gpu_available"]
