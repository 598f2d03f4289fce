import numpy as np
import pytest
import torch
from ranking import assert_top_k_up_to_ties

from reid.index import GalleryError, IndexSettings, exact_search
from reid.index.factory import _torch_search, build_index, normalised


def test_exact_search_is_brute_force_cosine():
    rng = np.random.default_rng(0)
    gallery, queries = rng.standard_normal((300, 24)), rng.standard_normal((17, 24))
    scores, ids = exact_search(gallery)(queries, 10)
    assert_top_k_up_to_ties(ids, queries, gallery, 10, found_scores=scores)


@pytest.mark.parametrize("block", [1 << 28, 500 * 7, 500])  # one block; 7 queries a block (40 = 5 x 7 + 5); one
def test_the_torch_path_for_gpus_without_faiss_gpu_gives_the_same_ranking(block):
    # on CUDA it runs on the GPU; the same code on a CPU tensor checks its numbers here, across chunk boundaries
    rng = np.random.default_rng(1)
    gallery, queries = rng.standard_normal((500, 32)), rng.standard_normal((40, 32))
    faiss_scores, faiss_ids = exact_search(gallery)(queries, 25)
    torch_scores, torch_ids = _torch_search(torch.from_numpy(normalised(gallery)), block)(queries, 25)
    assert torch_ids.shape == (40, 25) and torch_ids.dtype == np.int64
    assert_top_k_up_to_ties(torch_ids, queries, gallery, 25, found_scores=torch_scores)
    assert_top_k_up_to_ties(faiss_ids, queries, gallery, 25, found_scores=faiss_scores)


def test_settings_resolve_from_the_data():
    settings = IndexSettings(type="ivfpq").resolved(10_000, 64)
    assert settings.nlist == 100 and settings.pq_m == 16 and settings.factory_string() == "IVF100,PQ16x8,Refine(SQ8)"
    with pytest.raises(GalleryError, match="needs at least"):
        build_index(normalised(np.ones((50, 64))), settings)
    with pytest.raises(GalleryError, match="unknown index type 'annoy'"):
        IndexSettings.from_dict({"type": "annoy"}, "manifest.json")


def test_broken_embeddings_are_refused_by_name():
    vectors = np.ones((4, 8), np.float32)
    for bad, problem in ((np.nan, "not finite"), (np.inf, "not finite"), (0.0, "zero")):
        broken = vectors.copy()
        broken[2] = bad
        with pytest.raises(GalleryError, match=f"1 of 4 embeddings are {problem} .*first: row 2"):
            normalised(broken)
    with pytest.raises(GalleryError, match="queries must be \\(items, dim\\)"):
        normalised(np.ones(8), "queries")
