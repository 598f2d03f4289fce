"""Comparing a search's answer with a reference computed another way (FAISS against numpy, a GPU path against a
CPU one): scores within a tolerance and ids equal up to ties, never bit for bit, because two computations round
differently on another CPU (AVX-512, AVX2, one thread or several) and then order near-equal scores differently."""
import numpy as np


def cosine(queries, vectors) -> np.ndarray:
    """(queries x items) cosine similarities, in float64."""
    q = np.asarray(queries, np.float64)
    g = np.asarray(vectors, np.float64)
    return (q / np.linalg.norm(q, axis=1, keepdims=True)) @ (g / np.linalg.norm(g, axis=1, keepdims=True)).T


def assert_top_k_up_to_ties(found_ids, queries, vectors, k, allowed=None, atol=1e-5, found_scores=None):
    """Each row of ``found_ids`` is a true top-k of ``queries`` against ``vectors`` by cosine similarity (among the
    ``allowed`` items): as many items as qualify (up to k), each qualifying, none twice, best first, with the
    scores of the exact top-k within ``atol`` (so only items whose scores tie may be swapped). ``found_scores``,
    when given, must be those cosines too."""
    scores = cosine(queries, vectors)
    qualifying = np.ones(scores.shape[1], bool) if allowed is None else np.asarray(allowed, bool)
    for row, ids in enumerate(found_ids):
        ids = [int(i) for i in ids]
        expected = np.sort(scores[row, qualifying])[::-1][:k]
        assert len(ids) == len(expected), (row, len(ids), len(expected))
        assert len(set(ids)) == len(ids), (row, ids)
        assert qualifying[ids].all(), (row, [i for i in ids if not qualifying[i]])
        got = scores[row, ids]
        np.testing.assert_allclose(got, expected, rtol=0, atol=atol, err_msg=f"query {row}")
        assert (np.diff(got) <= atol).all(), (row, got)  # best first
        if found_scores is not None:
            np.testing.assert_allclose(found_scores[row][:len(ids)], got, rtol=0, atol=atol, err_msg=f"query {row}")
