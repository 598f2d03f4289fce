"""Feature extraction and evaluation of a model on a dataset's official protocol."""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch
from torch import nn

from reid.data.base import ReIDDataset
from reid.data.loader import SampleDataset, make_loader
from reid.data.samples import Direction, Sample
from reid.data.transforms import Pipeline
from reid.errors import ReidError
from reid.index import Gallery
from reid.metrics import Metric, RankEvaluator, RankResult, evaluate_features, evaluate_rank, pairwise_distance
from reid.report import EvaluationReport
from reid.rerank import k_reciprocal_rerank


@torch.no_grad()
def extract_features(
        model: nn.Module,
        samples: Sequence[Sample],
        pipeline: Pipeline,
        batch_size: int = 64,
        device: torch.device | str = "cpu",
        seq_len: int = 6,
        num_workers: int | None = None,
        amp_dtype: torch.dtype | None = None,
        progress: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """(N, D) float32 retrieval features (the model's BNNeck features) of samples, on the CPU."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    loader = make_loader(SampleDataset(samples, pipeline, seq_len), batch_size=batch_size,
                         num_workers=num_workers, device=device)
    chunks = []
    try:
        for images, _, _, infrared in loader:
            images = images.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                features = model(images, infrared.to(device)).bn_features
            chunks.append(features.float().cpu())
            if progress:
                progress(len(images))
    finally:
        model.train(was_training)
    return torch.cat(chunks) if chunks else torch.empty(0, getattr(model, "num_features", 0))


def evaluate_with_gallery(query: torch.Tensor, gallery: torch.Tensor, q_pids: Sequence[int], g_pids: Sequence[int],
                          q_camids: Sequence[int], g_camids: Sequence[int], protocol: str,
                          use_gpu: bool = False, chunk: int = 1024) -> RankResult:
    """Rank metrics with the gallery side searched through an exact FAISS index (on the GPU with faiss-gpu),
    one chunk of queries at a time; cosine distances, the same numbers as ``evaluate_features``."""
    rows = [{"path": str(i), "pid": int(p), "camid": int(c)} for i, (p, c) in enumerate(zip(g_pids, g_camids,
                                                                                                strict=True))]
    index = Gallery.build(gallery.numpy(), rows, "evaluation", use_gpu=use_gpu)
    evaluator = RankEvaluator(g_pids, g_camids, protocol)
    for start in range(0, len(query), chunk):
        scores, ids = index.top_k(query[start:start + chunk].numpy(), len(gallery))
        distances = torch.empty(len(ids), len(gallery))
        distances.scatter_(1, torch.from_numpy(ids), 1.0 - torch.from_numpy(scores))
        evaluator.process(distances, q_pids[start:start + chunk], q_camids[start:start + chunk])
    return evaluator.evaluate()


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
        model: nn.Module,
        dataset: ReIDDataset,
        pipeline: Pipeline,
        directions: Sequence[Direction] | None = None,
        trials: int = 1,
        trial: int = 0,
        rerank: bool = False,
        metric: Metric = "cosine",
        batch_size: int = 64,
        device: torch.device | str = "cpu",
        seq_len: int = 6,
        num_workers: int | None = None,
        amp_dtype: torch.dtype | None = None,
        progress: Callable[[int, int], None] | None = None,
        use_index: bool = False,
) -> EvaluationReport:
    """Metrics of ``model`` under the dataset's protocol, per direction, over gallery trials.

    Args:
        progress: Called as progress(done, total) while embedding.
        use_index: Search the gallery through an exact FAISS index (cosine), e.g. on a GPU with faiss-gpu.
    """
    directions = [d for d in (directions or dataset.directions) if d in dataset.directions]
    trial_list = trials_to_run(dataset, trials, trial)
    samples = evaluation_samples(dataset, directions, trial_list)
    done = [0]

    def advance(count: int) -> None:
        done[0] += count
        if progress:
            progress(done[0], len(samples))

    features = extract_features(model, samples, pipeline, batch_size, device, seq_len, num_workers, amp_dtype,
                                advance)
    row = {sample: i for i, sample in enumerate(samples)}
    report = EvaluationReport(dataset.name, dataset.protocol)
    for direction in directions:
        for t in trial_list:
            split = dataset.test_split(direction, t)
            query = features[[row[s] for s in split.query]]
            gallery = features[[row[s] for s in split.gallery]]
            labels = ([s.pid for s in split.query], [s.pid for s in split.gallery],
                      [s.camid for s in split.query], [s.camid for s in split.gallery])
            if use_index:
                if rerank or metric != "cosine":
                    raise ReidError("--use-index searches by cosine similarity without re-ranking")
                result = evaluate_with_gallery(query, gallery, *labels, dataset.protocol,
                                               use_gpu=torch.device(device).type == "cuda")
            elif rerank:
                distances = k_reciprocal_rerank(pairwise_distance(query, gallery, metric),
                                                pairwise_distance(query, query, metric),
                                                pairwise_distance(gallery, gallery, metric))
                result = evaluate_rank(distances, *labels, protocol=dataset.protocol)
            else:
                result = evaluate_features(query, gallery, *labels, protocol=dataset.protocol, metric=metric)
            report.add(direction, result)
    return report
