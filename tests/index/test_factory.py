import numpy as np
import pytest
import torch

from reid.index import GalleryError, IndexSettings, exact_search
from reid.index.factory import _torch_search, build_index, normalised


def test_exact_search_is_brute_force_cosine():
    rng = np.random.default_rng(0)
    gallery, queries = rng.standard_normal((300, 24)), rng.standard_normal((17, 24))
    scores, ids = exact_search(gallery)(queries, 10)
    cosine = normalised(queries) @ normalised(gallery).T
    np.testing.assert_array_equal(ids, np.argsort(-cosine, axis=1, kind="stable")[:, :10])
    np.testing.assert_allclose(scores, np.sort(cosine, axis=1)[:, ::-1][:, :10], rtol=1e-5, atol=1e-6)


def test_the_torch_path_for_gpus_without_faiss_gpu_gives_the_same_ranking():
    # on CUDA it runs on the GPU; the same code on a CPU tensor checks its numbers here
    rng = np.random.default_rng(1)
    gallery, queries = rng.standard_normal((500, 32)), rng.standard_normal((40, 32))
    faiss_scores, faiss_ids = exact_search(gallery)(queries, 25)
    torch_scores, torch_ids = _torch_search(torch.from_numpy(normalised(gallery)))(queries, 25)
    np.testing.assert_array_equal(torch_ids, faiss_ids)
    np.testing.assert_allclose(torch_scores, faiss_scores, rtol=1e-5, atol=1e-6)


def test_settings_resolve_from_the_data():
    settings = IndexSettings("ivfpq").resolved(10_000, 64)
    assert settings.nlist == 100 and settings.pq_m == 16 and settings.factory_string() == "IVF100,PQ16x8,Refine(SQ8)"
    with pytest.raises(GalleryError, match="needs at least"):
        build_index(normalised(np.ones((50, 64))), settings)
    with pytest.raises(GalleryError, match="unknown index type"):
        IndexSettings("annoy").resolved(10, 4)
