"""FAISS indexes of L2-normalised embeddings searched by inner product (cosine similarity): building them from
``IndexSettings``, search parameters, GPU copies, and the plain exact search that evaluation uses."""
from __future__ import annotations

from collections.abc import Callable, Sequence

import faiss
import numpy as np

from reid.index.settings import GalleryError, IndexSettings


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


def _torch_search(gallery):
    """Exact inner-product search on a CUDA tensor of normalised rows, chunked over queries."""
    import torch

    def search(queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        query = torch.from_numpy(normalised(queries)).to(gallery.device)
        step = max(1, (1 << 28) // max(len(gallery), 1))  # bounds the (queries x gallery) score block
        scores, ids = [], []
        for start in range(0, len(query), step):
            top = torch.topk(query[start:start + step] @ gallery.T, k, dim=1, sorted=True)
            scores.append(top.values.cpu())
            ids.append(top.indices.cpu())
        return torch.cat(scores).numpy(), torch.cat(ids).numpy().astype(np.int64)

    return search
