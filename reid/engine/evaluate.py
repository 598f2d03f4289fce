"""Evaluation of a model on a dataset's official protocol, and rank-list pictures from the same embeddings."""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from reid.data.base import ReIDDataset
from reid.data.protocols import Protocol
from reid.data.samples import Direction, Sample
from reid.engine.inference import Embedder, SampleEmbeddings
from reid.errors import ReidError
from reid.index import exact_search
from reid.metrics import Metric, RankEvaluator, RankResult, evaluate_embeddings, evaluate_rank, pairwise_distance
from reid.report import EvaluationReport
from reid.rerank import k_reciprocal_rerank
from reid.retrieval import RankList, pick_queries, rank_lists, ranked


@dataclass(frozen=True)
class Evaluation:
    """An evaluation's metrics and the embeddings it computed (pictures reuse them instead of embedding again)."""

    report: EvaluationReport
    embeddings: SampleEmbeddings


def evaluate_with_index(query_embeddings: torch.Tensor, gallery_embeddings: torch.Tensor, query_pids: Sequence[int],
                        gallery_pids: Sequence[int], query_camids: Sequence[int], gallery_camids: Sequence[int],
                        protocol: Protocol, use_gpu: bool = False, chunk: int = 1024) -> RankResult:
    """Rank metrics with the gallery searched through an exact FAISS index (on the GPU with faiss-gpu), one
    chunk of queries at a time; cosine distances, the same numbers as ``evaluate_embeddings``."""
    evaluator = RankEvaluator(gallery_pids, gallery_camids, protocol)
    search = exact_search(gallery_embeddings.numpy(), use_gpu=use_gpu)
    for start in range(0, len(query_embeddings), chunk):
        scores, ids = search(query_embeddings[start:start + chunk].numpy(), len(gallery_embeddings))
        distances = torch.empty(len(ids), len(gallery_embeddings))
        distances.scatter_(1, torch.from_numpy(ids), 1.0 - torch.from_numpy(scores))
        evaluator.process(distances, query_pids[start:start + chunk], query_camids[start:start + chunk])
    return evaluator.evaluate()


def evaluation_notes(dataset: ReIDDataset, directions: Sequence[Direction], trials: int | None) -> list[str]:
    """What an evaluation runs where it differs from what was asked: directions the protocol does not have, and
    gallery trials beyond the protocol's (or on RegDB, which evaluates the one split its model was trained on)."""
    notes = [f"{dataset.title} has no {direction} search in its official protocol; evaluating "
             f"{' and '.join(dataset.directions)} only"
             for direction in directions if direction not in dataset.directions]
    if trials is not None and dataset.trains_per_trial:
        notes.append(f"{dataset.title} trains one model per split, so --trials does not apply: the split of --trial "
                     f"is evaluated")
    elif trials is not None and trials > dataset.num_trials:
        noun = "trial" if dataset.num_trials == 1 else "trials"
        notes.append(f"{dataset.title}'s protocol has {dataset.num_trials} gallery {noun}; evaluating "
                     f"{dataset.num_trials}, not {trials}")
    return notes


def trials_to_run(dataset: ReIDDataset, trials: int, trial: int = 0) -> list[int]:
    """Gallery trials of an evaluation. RegDB trains one model per split, so only that split is evaluated."""
    if dataset.trains_per_trial:
        return [trial]
    return list(range(min(trials, dataset.num_trials)))


def evaluation_samples(dataset: ReIDDataset, directions: Iterable[Direction], trials: list[int]) -> list[Sample]:
    """Every distinct query and gallery sample of the evaluation, so each is embedded once."""
    unique: dict[Sample, None] = {}
    for direction in directions:
        for trial in trials:
            split = dataset.test_split(direction, trial)
            unique.update(dict.fromkeys(split.query))
            unique.update(dict.fromkeys(split.gallery))
    return list(unique)


def evaluate_dataset(
        embedder: Embedder,
        dataset: ReIDDataset,
        directions: Sequence[Direction] | None = None,
        trials: int = 1,
        trial: int = 0,
        rerank: bool = False,
        metric: Metric = "cosine",
        progress: Callable[[int, int], None] | None = None,
        use_index: bool = False,
        per_query: bool = False,
        top_k: int = 10,
) -> Evaluation:
    """Metrics of the embedder's model under the dataset's protocol, per direction, over gallery trials.

    Every distinct query and gallery sample is embedded once.

    Args:
        progress: Called as progress(done, total) while embedding.
        use_index: Search the gallery through an exact FAISS index (cosine), e.g. on a GPU with faiss-gpu.
        per_query: Also record, for the first trial of each direction, every query's AP, the place of its first
            true match and its top-k gallery items (``EvaluationReport.queries``: what ``reid serve`` shows).
    """
    if use_index and (rerank or metric != "cosine"):
        raise ReidError("--use-index searches by cosine similarity without re-ranking")
    directions = [d for d in (directions or dataset.directions) if d in dataset.directions]
    trial_list = trials_to_run(dataset, trials, trial)
    samples = evaluation_samples(dataset, directions, trial_list)
    done = [0]

    def advance(count: int) -> None:
        done[0] += count
        if progress:
            progress(done[0], len(samples))

    embeddings = SampleEmbeddings(samples, embedder.embed(samples, advance))
    report = EvaluationReport(dataset.name, dataset.protocol.name, reranked=rerank, model=embedder.identity())
    for direction in directions:
        for t in trial_list:
            split = dataset.test_split(direction, t)
            query, gallery = embeddings.of(split.query), embeddings.of(split.gallery)
            labels = ([s.pid for s in split.query], [s.pid for s in split.gallery],
                      [s.camid for s in split.query], [s.camid for s in split.gallery])
            recorded = per_query and t == trial_list[0]
            distances = None
            if use_index:
                result = evaluate_with_index(query, gallery, *labels, dataset.protocol,
                                             use_gpu=embedder.device.type == "cuda")
            elif rerank:
                distances = k_reciprocal_rerank(pairwise_distance(query, gallery, metric),
                                                pairwise_distance(query, query, metric),
                                                pairwise_distance(gallery, gallery, metric))
                result = evaluate_rank(distances, *labels, protocol=dataset.protocol, keep_queries=recorded)
            else:
                result = evaluate_embeddings(query, gallery, *labels, protocol=dataset.protocol, metric=metric,
                                             keep_queries=recorded)
            report.add(direction, result)
            if recorded:
                if distances is None:
                    distances = pairwise_distance(query, gallery, metric)
                    if result.query_ap is None:  # through an index: the same numbers, kept from the dense ones
                        result = evaluate_rank(distances, *labels, protocol=dataset.protocol, keep_queries=True)
                report.queries[direction] = query_records(split, distances, dataset.protocol, result, top_k, metric)
                report.queries_trial = t
    return Evaluation(report, embeddings)


def query_records(split, distances: torch.Tensor, protocol: Protocol, result: RankResult, top_k: int,
                  metric: Metric) -> list[dict]:
    """Per query of a split: its image, identity, camera, AP (%) and first true match (as ``result`` kept them),
    its top-k gallery items by ``distances`` with whether each is a true match, and its first true match in the
    ranked gallery (``first_match_item``: where it is, what it is; None without one), to show beside a failed
    query's top-k."""
    records = []
    lists = ranked(split.query, split.gallery, distances, protocol, top_k, metric)
    firsts = first_true_matches(split.query, split.gallery, distances, protocol, metric)
    for ranked_list, ap, first, item in zip(lists, result.query_ap, result.query_first_match, firsts, strict=True):
        sample = ranked_list.query
        records.append({"query": _path(sample), "pid": sample.pid, "camid": sample.camid,
                        "ap": None if np.isnan(ap) else round(float(ap), 2), "first_match": int(first) or None,
                        "first_match_item": item,
                        "top": [{"path": _path(match), "pid": match.pid, "camid": match.camid, "match": correct,
                                 "score": round(score, 4)}
                                for match, correct, score in zip(ranked_list.matches, ranked_list.correct,
                                                                 ranked_list.scores, strict=True)]})
    return records


def first_true_matches(queries: Sequence[Sample], gallery: Sequence[Sample], distances: torch.Tensor,
                       protocol: Protocol, metric: Metric) -> list[dict | None]:
    """Per query, the first gallery item of its identity in its ranked list (the items the protocol hides left
    out, ties by gallery order): {"rank" (1-based), "path", "pid", "camid", "score"}, or None."""
    removed = protocol.removed([s.pid for s in queries], [s.camid for s in queries], [s.pid for s in gallery],
                               [s.camid for s in gallery])
    masked = distances.masked_fill(removed, torch.inf)
    order = torch.sort(masked, dim=1, stable=True).indices
    gallery_pids = torch.tensor([s.pid for s in gallery])
    found = []
    for row, query in enumerate(queries):
        matches = ((gallery_pids[order[row]] == query.pid) & torch.isfinite(masked[row, order[row]])).nonzero()
        if not len(matches):
            found.append(None)
            continue
        place = int(matches[0])
        item = gallery[int(order[row, place])]
        distance = float(distances[row, int(order[row, place])])
        found.append({"rank": place + 1, "path": _path(item), "pid": item.pid, "camid": item.camid,
                      "score": round(-distance if metric == "euclidean" else 1 - distance, 4)})
    return found


def _path(sample: Sample) -> str:
    """A sample's image (a tracklet: its middle frame), absolute."""
    return os.path.abspath(sample.shown_frame)


def dataset_rank_lists(
        source: SampleEmbeddings | Embedder,
        dataset: ReIDDataset,
        directions: Sequence[Direction],
        trial: int = 0,
        queries: int = 4,
        top_k: int = 10,
        seed: int = 0,
) -> dict[str, list[RankList]]:
    """Rank lists of ``queries`` queries (distinct identities, drawn with ``seed``) per direction, on the gallery
    of trial 0 (RegDB: of ``trial``).

    Args:
        source: Features an evaluation computed (nothing is embedded again), or an Embedder to embed just the
            chosen queries and the gallery.
    """
    panels = {}
    for direction in directions:
        split = dataset.test_split(direction, trial if dataset.trains_per_trial else 0)
        chosen = [split.query[i] for i in pick_queries(split.query, queries, seed)]
        embeddings = source
        if isinstance(source, Embedder):
            needed = list(dict.fromkeys(chosen + split.gallery))
            embeddings = SampleEmbeddings(needed, source.embed(needed))
        panels[direction] = rank_lists(chosen, embeddings.of(chosen), split.gallery, embeddings.of(split.gallery),
                                       dataset.protocol, top_k)
    return panels
