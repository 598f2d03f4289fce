"""Evaluation speed: the vectorised evaluator against the per-query reference, and a 50k x 50k evaluation.

1. LLCM test scale (7,166 infrared queries x 3,159 visible gallery images: 351 identities, one image per
   identity and camera), LLCM protocol, on the same distance matrix: reid.metrics.evaluate_rank against the
   tests' oracle, which is the straightforward per-query loop of the public VI-ReID evaluation scripts (Python
   work per gallery item; tests/reference_metrics.py).
2. 50,000 x 50,000 from 256-d features (reid.metrics.evaluate_embeddings, chunked): time and peak RSS.

    python benchmarks/bench_metrics.py [--large 50000]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from reid.metrics import evaluate_embeddings, evaluate_rank, pairwise_distance
from reid.profiling import peak_memory_mb
from reid.report import markdown_table

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from reference_metrics import evaluate_rank_reference  # noqa: E402  (the tests' oracle is the peer)


def features(pids: np.ndarray, centres: torch.Tensor, noise: float, generator: torch.Generator) -> torch.Tensor:
    return centres[torch.as_tensor(pids)] + noise * torch.randn(len(pids), centres.shape[1], generator=generator)


def llcm_scale(rounds: int) -> list[list[str]]:
    rng = np.random.default_rng(0)
    generator = torch.Generator().manual_seed(0)
    ids = np.arange(351)
    gallery_pids, gallery_camids = np.repeat(ids, 9), np.tile(np.arange(1, 10), 351)  # 3,159
    query_pids = rng.choice(ids, 7166)
    query_camids = rng.choice([1, 2, 4, 5, 6, 7, 8, 9], 7166)
    centres = torch.randn(351, 256, generator=generator)
    distances = pairwise_distance(features(query_pids, centres, 1.5, generator),
                                  features(gallery_pids, centres, 1.5, generator))
    distances_np = distances.numpy()

    ours_times = []

    def time_ours() -> object:
        for _ in range(rounds):
            start = time.perf_counter()
            result = evaluate_rank(distances, query_pids, gallery_pids, query_camids, gallery_camids, "llcm")
            ours_times.append(time.perf_counter() - start)
        return result

    # ours is timed both before and after the (half-minute) peer, so a drift of the machine's speed during the
    # run does not favour either side
    time_ours()
    peers = {}
    for name, function in (("per-query loop of the public evaluation scripts (the tests' oracle)",
                            evaluate_rank_reference),):
        start = time.perf_counter()
        result = function(distances_np, query_pids, gallery_pids, query_camids, gallery_camids, "llcm")
        peers[name] = (time.perf_counter() - start, result)
    ours = time_ours()
    ours_seconds = float(np.median(ours_times))
    loop_seconds = next(iter(peers.values()))[0]
    rows = []
    for name, (seconds, result) in peers.items():
        assert abs(ours.mAP - result.mAP) < 1e-4 and np.allclose(ours.cmc, result.cmc, atol=1e-4)
        rows.append([name, f"{seconds:.2f}", f"{loop_seconds / seconds:.1f}x", f"{result.mAP:.4f}"])
    rows.append(["reid.metrics.evaluate_rank", f"{ours_seconds:.3f}", f"{loop_seconds / ours_seconds:.0f}x",
                 f"{ours.mAP:.4f}"])
    return rows


def large_scale(size: int) -> list[str]:
    generator = torch.Generator().manual_seed(1)
    rng = np.random.default_rng(1)
    num_ids = size // 10
    centres = torch.randn(num_ids, 256, generator=generator)
    query_pids, gallery_pids = rng.integers(0, num_ids, size), rng.integers(0, num_ids, size)
    query = features(query_pids, centres, 1.5, generator)
    gallery = features(gallery_pids, centres, 1.5, generator)
    query_camids, gallery_camids = rng.integers(1, 5, size), rng.integers(1, 5, size)
    outcome = {}

    def run() -> None:
        start = time.perf_counter()
        outcome["result"] = evaluate_embeddings(query, gallery, query_pids, gallery_pids, query_camids, gallery_camids,
                                              "llcm")
        outcome["seconds"] = time.perf_counter() - start

    growth = peak_memory_mb(run)
    dense = size * size * 8 / 2 ** 20
    inputs = (query.numel() + gallery.numel()) * 4 / 2 ** 20
    return [f"{size:,} x {size:,}", f"{outcome['seconds']:.1f}", f"{growth:.0f}", f"{inputs:.0f}", f"{dense:,.0f}",
            f"{outcome['result'].mAP:.2f}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--large", type=int, default=50_000)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, CPU\n")
    print("## LLCM test scale: 7,166 queries x 3,159 gallery, LLCM protocol, one trial\n")
    print(markdown_table(["evaluator", "seconds", "speed-up vs the loop", "mAP (%)"], llcm_scale(args.rounds)), "\n",
          flush=True)
    print(f"## {args.large:,} x {args.large:,} from 256-d features (chunked, cosine)\n")
    print(markdown_table(["size", "seconds", "peak memory growth (MB)", "features (MB)", "a dense float64 matrix (MB)",
                          "mAP (%)"], [large_scale(args.large)]))


if __name__ == "__main__":
    main()
