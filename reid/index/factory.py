"""FAISS indexes of L2-normalised embeddings searched by inner product (cosine similarity): building them from
``IndexSettings``, reading their vectors back, GPU copies, and the plain exact search that evaluation uses."""
from __future__ import annotations

from collections.abc import Callable, Sequence

import faiss
import numpy as np

from reid.index.settings import GalleryError, IndexSettings


def normalised(embeddings: np.ndarray | Sequence, what: str = "embeddings") -> np.ndarray:
    """Embeddings as a contiguous float32 (items, dim) array with unit rows; NaN, infinite and zero rows (a broken
    model's output) are a GalleryError, since cosine search could never find them."""
    vectors = np.array(embeddings, dtype=np.float32, order="C")
    if vectors.ndim != 2:
        raise GalleryError(f"{what} must be (items, dim), got shape {vectors.shape}")
    finite = np.isfinite(vectors).all(axis=1)
    zero = finite & ~vectors.any(axis=1)
    if not finite.all() or zero.any():
        rows = np.flatnonzero(~finite | zero)
        problem = "not finite (NaN or infinite)" if not finite.all() else "zero"
        raise GalleryError(f"{len(rows)} of {len(vectors)} {what} are {problem} (first: row {rows[0]}); the model's "
                           f"weights or the images are broken")
    faiss.normalize_L2(vectors)
    return vectors


def build_index(vectors: np.ndarray, settings: IndexSettings) -> faiss.Index:
    """An empty index of ``settings.type`` for vectors like ``vectors``, trained on them where it needs training
    (``settings`` must be resolved)."""
    needed = settings.minimum_training_vectors()
    if len(vectors) < needed:
        raise GalleryError(f"an {settings.type} index with nlist={settings.nlist} needs at least {needed} vectors to "
                           f"train, the gallery has {len(vectors)}; use --type flat or hnsw, or a smaller nlist")
    index = faiss.index_factory(vectors.shape[1], settings.factory_string(), faiss.METRIC_INNER_PRODUCT)
    settings.kind.configure(index, settings)
    if not index.is_trained:
        sample = settings.training_sample_size()
        rows = np.random.default_rng(0).choice(len(vectors), sample, replace=False) if len(vectors) > sample \
            else slice(None)
        index.train(vectors[rows])
    return index


def empty_copy(index: faiss.Index) -> faiss.Index:
    """A copy of ``index`` without its vectors, keeping what it learnt (IVF centroids, PQ codebooks), so compacting
    a gallery never needs the vectors a new training would."""
    copy = faiss.clone_index(index)
    copy.reset()
    return copy


def stored_vectors(index: faiss.Index, ids: np.ndarray) -> np.ndarray:
    """The vectors the index keeps for ``ids`` (exact for flat, hnsw and ivfflat; ivfpq keeps 8-bit ones)."""
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    try:
        return index.reconstruct_batch(ids)
    except RuntimeError:  # an IVF index answers by id only with a direct map, which it does not keep by default
        faiss.extract_index_ivf(index).make_direct_map()
        return index.reconstruct_batch(ids)


def search_parameters(settings: IndexSettings, selector: faiss.IDSelector | None) -> faiss.SearchParameters | None:
    """Per-search parameters of the index type, restricted to ``selector``'s ids when given."""
    return settings.kind.search_parameters(settings, selector)


def gpu_available() -> bool:
    """faiss-gpu is installed and sees a GPU."""
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def to_gpu(index: faiss.Index) -> faiss.Index:
    """A copy of ``index`` on every GPU (faiss-gpu)."""
    return faiss.index_cpu_to_all_gpus(index)


def exact_search(gallery: np.ndarray, use_gpu: bool = False) -> Callable[[np.ndarray, int], tuple[np.ndarray,
                                                                                                   np.ndarray]]:
    """Exact cosine search over ``gallery``: a function (queries, k) -> (scores, row numbers), best first.

    No metadata, filters or persistence: what an evaluation needs. With ``use_gpu``, on the GPU: through
    faiss-gpu when it is installed, else as a torch matrix product and top-k on CUDA (the same numbers).
    """
    vectors = normalised(gallery)
    if use_gpu and not gpu_available():
        import torch

        if torch.cuda.is_available():
            return _torch_search(torch.from_numpy(vectors).cuda())
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    if use_gpu and gpu_available():
        index = to_gpu(index)

    def search(queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return index.search(normalised(queries), k)

    return search


def _torch_search(gallery, block_elements: int = 1 << 28):
    """Exact inner-product search on a tensor of normalised rows (on CUDA when faiss-gpu is missing), chunked over
    queries so a (queries x gallery) score block holds at most ``block_elements`` scores."""
    import torch

    def search(queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        query = torch.from_numpy(normalised(queries, "queries")).to(gallery.device)
        step = max(1, block_elements // max(len(gallery), 1))
        scores, ids = [], []
        for start in range(0, len(query), step):
            top = torch.topk(query[start:start + step] @ gallery.T, k, dim=1, sorted=True)
            scores.append(top.values.cpu())
            ids.append(top.indices.cpu())
        return torch.cat(scores).numpy(), torch.cat(ids).numpy().astype(np.int64)

    return search
