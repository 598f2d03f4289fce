"""Evaluation speed: the vectorised evaluator against the per-query reference, and a 50k x 50k evaluation.

1. LLCM test scale (7,166 infrared queries x 3,159 visible gallery images: 351 identities, one image per
   identity and camera), LLCM protocol: reid.metrics.evaluate_rank against
   reid.metrics_reference.evaluate_rank_reference (a plain loop over queries) on the same distance matrix.
2. 50,000 x 50,000 from 256-d features (reid.metrics.evaluate_features, chunked): time and peak RSS.

    python benchmarks/bench_metrics.py [--large 50000]
"""
from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from timing import markdown_table  # noqa: E402

from reid.metrics import evaluate_features, evaluate_rank, pairwise_distance  # noqa: E402
from reid.metrics_reference import evaluate_rank_reference  # noqa: E402


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


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

    start = time.perf_counter()
    reference = evaluate_rank_reference(distmat_np, q_pids, g_pids, q_camids, g_camids, "llcm")
    reference_seconds = time.perf_counter() - start
    ours_times = []
    for _ in range(rounds):
        start = time.perf_counter()
        ours = evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids, "llcm")
        ours_times.append(time.perf_counter() - start)
    ours_seconds = float(np.median(ours_times))
    assert abs(ours.mAP - reference.mAP) < 1e-6 and np.allclose(ours.cmc, reference.cmc, atol=1e-6)
    return [
        ["per-query reference (numpy loop)", f"{reference_seconds:.2f}", "1.0x", f"{100 * reference.mAP:.4f}"],
        ["reid.metrics.evaluate_rank", f"{ours_seconds:.3f}", f"{reference_seconds / ours_seconds:.0f}x",
         f"{100 * ours.mAP:.4f}"],
    ]


def large_scale(size: int) -> list[str]:
    generator = torch.Generator().manual_seed(1)
    rng = np.random.default_rng(1)
    num_ids = size // 10
    centres = torch.randn(num_ids, 256, generator=generator)
    q_pids, g_pids = rng.integers(0, num_ids, size), rng.integers(0, num_ids, size)
    query = features(q_pids, centres, 1.5, generator)
    gallery = features(g_pids, centres, 1.5, generator)
    before = peak_rss_mb()
    start = time.perf_counter()
    result = evaluate_features(query, gallery, q_pids, g_pids, rng.integers(1, 5, size), rng.integers(1, 5, size),
                               "llcm")
    seconds = time.perf_counter() - start
    dense = size * size * 8 / 2 ** 20
    return [f"{size:,} x {size:,}", f"{seconds:.1f}", f"{peak_rss_mb():.0f}", f"{peak_rss_mb() - before:.0f}",
            f"{dense:,.0f}", f"{100 * result.mAP:.2f}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--large", type=int, default=50_000)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, CPU\n")
    print("## LLCM test scale: 7,166 queries x 3,159 gallery, LLCM protocol, one trial\n")
    print(markdown_table(["evaluator", "seconds", "speed-up", "mAP (%)"], llcm_scale(args.rounds)), "\n", flush=True)
    print(f"## {args.large:,} x {args.large:,} from 256-d features (chunked, cosine)\n")
    print(markdown_table(["size", "seconds", "peak RSS (MB)", "RSS growth (MB)", "dense float64 matrix (MB)",
                          "mAP (%)"], [large_scale(args.large)]))


if __name__ == "__main__":
    main()
