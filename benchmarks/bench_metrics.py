"""Evaluation speed: the vectorised evaluator against the per-query reference, and a 50k x 50k evaluation.

1. LLCM test scale (7,166 infrared queries x 3,159 visible gallery images: 351 identities, one image per
   identity and camera), LLCM protocol, on the same distance matrix: reid.metrics.evaluate_rank against the
   straightforward per-query loop of the public VI-ReID evaluation scripts (evaluate_rank_loop: Python work per
   gallery item) and against this project's per-query oracle (evaluate_rank_reference, numpy per row).
2. 50,000 x 50,000 from 256-d features (reid.metrics.evaluate_features, chunked): time and peak RSS.

    python benchmarks/bench_metrics.py [--large 50000]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from reid.metrics import evaluate_features, evaluate_rank, pairwise_distance
from reid.metrics_reference import evaluate_rank_loop, evaluate_rank_reference
from reid.profiling import peak_memory_mb
from reid.report import markdown_table


def features(pids: np.ndarray, centres: torch.Tensor, noise: float, generator: torch.Generator) -> torch.Tensor:
    return centres[torch.as_tensor(pids)] + noise * torch.randn(len(pids), centres.shape[1], generator=generator)


def llcm_scale(rounds: int) -> list[list[str]]:
    rng = np.random.default_rng(0)
    generator = torch.Generator().manual_seed(0)
    ids = np.arange(351)
    g_pids, g_camids = np.repeat(ids, 9), np.tile(np.arange(1, 10), 351)  # 3,159
    q_pids = rng.choice(ids, 7166)
    q_camids = rng.choice([1, 2, 4, 5, 6, 7, 8, 9], 7166)
    centres = torch.randn(351, 256, generator=generator)
    distmat = pairwise_distance(features(q_pids, centres, 1.5, generator), features(g_pids, centres, 1.5, generator))
    distmat_np = distmat.numpy()

    peers = {}
    for name, function in (("per-query loop of the public evaluation scripts", evaluate_rank_loop),
                           ("per-query oracle (numpy per row)", evaluate_rank_reference)):
        start = time.perf_counter()
        result = function(distmat_np, q_pids, g_pids, q_camids, g_camids, "llcm")
        peers[name] = (time.perf_counter() - start, result)
    ours_times = []
    for _ in range(rounds):
        start = time.perf_counter()
        ours = evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids, "llcm")
        ours_times.append(time.perf_counter() - start)
    ours_seconds = float(np.median(ours_times))
    loop_seconds = next(iter(peers.values()))[0]
    rows = []
    for name, (seconds, result) in peers.items():
        assert abs(ours.mAP - result.mAP) < 1e-6 and np.allclose(ours.cmc, result.cmc, atol=1e-6)
        rows.append([name, f"{seconds:.2f}", f"{loop_seconds / seconds:.1f}x", f"{100 * result.mAP:.4f}"])
    rows.append(["reid.metrics.evaluate_rank", f"{ours_seconds:.3f}", f"{loop_seconds / ours_seconds:.0f}x",
                 f"{100 * ours.mAP:.4f}"])
    return rows


def large_scale(size: int) -> list[str]:
    generator = torch.Generator().manual_seed(1)
    rng = np.random.default_rng(1)
    num_ids = size // 10
    centres = torch.randn(num_ids, 256, generator=generator)
    q_pids, g_pids = rng.integers(0, num_ids, size), rng.integers(0, num_ids, size)
    query = features(q_pids, centres, 1.5, generator)
    gallery = features(g_pids, centres, 1.5, generator)
    q_camids, g_camids = rng.integers(1, 5, size), rng.integers(1, 5, size)
    outcome = {}

    def run() -> None:
        start = time.perf_counter()
        outcome["result"] = evaluate_features(query, gallery, q_pids, g_pids, q_camids, g_camids, "llcm")
        outcome["seconds"] = time.perf_counter() - start

    growth = peak_memory_mb(run)
    dense = size * size * 8 / 2 ** 20
    inputs = (query.numel() + gallery.numel()) * 4 / 2 ** 20
    return [f"{size:,} x {size:,}", f"{outcome['seconds']:.1f}", f"{growth:.0f}", f"{inputs:.0f}", f"{dense:,.0f}",
            f"{100 * outcome['result'].mAP:.2f}"]


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
