"""FAISS galleries of re-ID embeddings: an index factory, a columnar metadata table, a directory store, and the
``Gallery`` that puts them together (see the modules for each part)."""
from reid.index.factory import INDEX_TYPES, GalleryError, IndexSettings, IndexType, exact_search, gpu_available
from reid.index.gallery import Gallery, SearchHit
from reid.index.metadata import MetadataTable
from reid.index.store import FORMAT_VERSION, Manifest

__all__ = ["FORMAT_VERSION", "INDEX_TYPES", "Gallery", "GalleryError", "IndexSettings", "IndexType", "Manifest",
           "MetadataTable", "SearchHit", "exact_search", "gpu_available"]
