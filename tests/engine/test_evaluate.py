"""Evaluation on a dataset: every branch (plain, re-ranked, through an exact index) against the metric and
re-ranking functions it is built on, and what it says when asked for what a protocol lacks."""
import zlib

import numpy as np
import pytest
import torch

from reid.data import load_dataset
from reid.engine.evaluate import evaluate_dataset, evaluation_notes, evaluation_samples, trials_to_run
from reid.errors import ReidError
from reid.metrics import evaluate_embeddings, evaluate_rank, pairwise_distance
from reid.rerank import k_reciprocal_rerank


class FixedEmbedder:
    """Embeddings that depend on the identity (plus noise seeded by the path): enough signal to rank by."""

    device = torch.device("cpu")

    def embed(self, samples, progress=None):
        rows = []
        for sample in samples:
            rng = np.random.default_rng(zlib.crc32(str(sample.path).encode()))
            centre = np.random.default_rng(sample.pid).standard_normal(16)
            rows.append(centre + 1.5 * rng.standard_normal(16))
        if progress:
            progress(len(samples))
        return torch.tensor(np.array(rows), dtype=torch.float32)

    def identity(self):
        return {"backbone": "fixed", "checkpoint": None, "digest": None}


@pytest.fixture(scope="module")
def llcm(tmp_path_factory):
    from reid.data import make_dataset

    return load_dataset("llcm", make_dataset("llcm", tmp_path_factory.mktemp("l") / "LLCM", 10, seed=4))


def expected(dataset, direction, trial, rerank):
    split = dataset.test_split(direction, trial)
    query, gallery = FixedEmbedder().embed(split.query), FixedEmbedder().embed(split.gallery)
    labels = ([s.pid for s in split.query], [s.pid for s in split.gallery], [s.camid for s in split.query],
              [s.camid for s in split.gallery])
    if not rerank:
        return evaluate_embeddings(query, gallery, *labels, protocol=dataset.protocol)
    distances = k_reciprocal_rerank(pairwise_distance(query, gallery), pairwise_distance(query, query),
                                    pairwise_distance(gallery, gallery))
    return evaluate_rank(distances, *labels, protocol=dataset.protocol)


@pytest.mark.parametrize("rerank", [False, True])
def test_each_direction_and_trial_equals_the_metric_functions(llcm, rerank):
    report = evaluate_dataset(FixedEmbedder(), llcm, trials=3, rerank=rerank).report
    assert report.reranked is rerank and report.trials == 3
    for direction in ("ir2vis", "vis2ir"):
        for trial, result in enumerate(report.results[direction]):
            reference = expected(llcm, direction, trial, rerank)
            np.testing.assert_allclose(result.cmc, reference.cmc)
            assert result.mAP == pytest.approx(reference.mAP) and result.mINP == pytest.approx(reference.mINP)


def test_re_ranking_changes_the_numbers(llcm):
    plain = evaluate_dataset(FixedEmbedder(), llcm, trials=1).report.mean("ir2vis")
    reranked = evaluate_dataset(FixedEmbedder(), llcm, trials=1, rerank=True).report.mean("ir2vis")
    assert plain["mAP"] != reranked["mAP"]  # the branch is taken, not ignored


def test_an_exact_index_gives_the_dense_numbers(llcm):
    dense = evaluate_dataset(FixedEmbedder(), llcm, trials=2).report.to_dict()["results"]
    indexed = evaluate_dataset(FixedEmbedder(), llcm, trials=2, use_index=True).report.to_dict()["results"]
    for direction in dense:
        for key, value in dense[direction].items():
            if key != "std":
                assert indexed[direction][key] == pytest.approx(value, abs=1e-3)
    with pytest.raises(ReidError, match="--use-index searches by cosine similarity without re-ranking"):
        evaluate_dataset(FixedEmbedder(), llcm, rerank=True, use_index=True)


def test_every_sample_is_embedded_once(llcm):
    samples = evaluation_samples(llcm, ("ir2vis", "vis2ir"), [0, 1, 2])
    assert len(samples) == len(set(samples))
    counted = []
    embedder = FixedEmbedder()
    real = embedder.embed
    embedder.embed = lambda chosen, progress=None: counted.append(len(chosen)) or real(chosen, progress)
    evaluate_dataset(embedder, llcm, trials=3)
    assert counted == [len(samples)]


def test_notes_say_what_runs_instead_of_what_was_asked(synthetic_sysu, llcm):
    assert trials_to_run(llcm, 50) == list(range(10))
    assert evaluation_notes(llcm, ["ir2vis"], 50) == ["LLCM's protocol has 10 gallery trials; evaluating 10, not 50"]
    assert evaluation_notes(synthetic_sysu, ["ir2vis", "vis2ir"], None) == [
        "SYSU-MM01 has no vis2ir search in its official protocol; evaluating ir2vis only"]


@pytest.fixture(scope="module")
def synthetic_sysu(tmp_path_factory):
    from reid.data import make_dataset

    return load_dataset("sysu", make_dataset("sysu", tmp_path_factory.mktemp("s") / "SYSU", 10, seed=4))


@pytest.mark.parametrize("rerank", [False, True])
def test_each_query_is_recorded_with_its_ap_and_top_ten(llcm, rerank):
    report = evaluate_dataset(FixedEmbedder(), llcm, trials=2, rerank=rerank, per_query=True).report
    for direction in ("ir2vis", "vis2ir"):
        records = report.queries[direction]
        split = llcm.test_split(direction, 0)
        assert [r["query"] for r in records] == [str(s.path) for s in split.query]
        first_trial = report.results[direction][0]
        aps = [r["ap"] for r in records if r["ap"] is not None]
        assert np.mean(aps) == pytest.approx(first_trial.mAP, abs=0.01)  # the trial's own mAP, query by query
        for record in records:
            assert len(record["top"]) == 10 and all(t["match"] == (t["pid"] == record["pid"]) for t in record["top"])
            scores = [t["score"] for t in record["top"]]
            assert scores == sorted(scores, reverse=True)
            if record["first_match"] == 1 and not llcm.protocol.dedup_cmc:
                assert record["top"][0]["match"]
    assert "queries" in report.to_dict() and "queries" not in evaluate_dataset(FixedEmbedder(), llcm).report.to_dict()
