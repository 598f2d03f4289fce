"""FAISS gallery scale: build time, memory, queries/s and recall@10 of every index type.

Synthetic L2-normalised embeddings with cluster structure (default 1,000,000 x 384 in 20,000 clusters, like
many identities seen many times). Queries are held-out points of the same clusters. Recall@10 is measured
against the exact (flat) index with faiss.contrib's knn_intersection_measure; queries/s at batch 1 (one query per
call) and batch 1,000; memory as the serialised index size per vector, and the process's peak RSS. A last column
gives recall@10 of a selective filter (one camera holding 20 items per million) against flat's answer to it, and
one of a broad filter (one modality: half the items, far more than the gallery compares one by one, so the index
searches among them) against flat's.

    python benchmarks/bench_index.py [--size 1000000] [--dim 384] [--types flat,hnsw,ivfflat,ivfpq]
"""
from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np
from faiss.contrib.evaluation import knn_intersection_measure

from reid.index import Gallery, IndexSettings
from reid.report import markdown_table


def embeddings(size: int, dim: int, clusters: int, queries: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim), dtype=np.float32)
    data = np.empty((size + queries, dim), dtype=np.float32)
    for start in range(0, size + queries, 100_000):  # in blocks, to keep the peak low
        stop = min(size + queries, start + 100_000)
        labels = rng.integers(0, clusters, stop - start)
        data[start:stop] = centres[labels] + 0.6 * rng.standard_normal((stop - start, dim), dtype=np.float32)
    faiss.normalize_L2(data)
    return data[:size], data[size:]


def queries_per_second(gallery: Gallery, queries: np.ndarray, batch: int, calls: int) -> float:
    start = time.perf_counter()
    done = 0
    for call in range(calls):
        chunk = queries[(call * batch) % len(queries):][:batch]
        gallery.search(chunk, 10)
        done += len(chunk)
    return done / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--clusters", type=int, default=20_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--types", default="flat,hnsw,ivfflat,ivfpq", help="index types (flat first: the reference)")
    args = parser.parse_args()
    faiss.omp_set_num_threads(args.threads)
    vectors, queries = embeddings(args.size, args.dim, args.clusters, args.queries)
    rare = max(1, args.size // 50_000)  # every item on this camera: 20 per million
    metadata = [{"path": str(i), "pid": None, "camid": 99 if i % rare == 0 and i // rare < 20 * max(1, args.size
                // 1_000_000) else 1, "modality": "vis" if i % 2 else "ir"} for i in range(args.size)]
    builds = {name: settings for name, settings in {
        "flat": IndexSettings(type="flat"),
        "hnsw": IndexSettings(type="hnsw", hnsw_m=16, ef_construction=64),
        "ivfflat": IndexSettings(type="ivfflat"),
        "ivfpq": IndexSettings(type="ivfpq"),
    }.items() if name in args.types.split(",")}
    # search-time settings tried on each built index: (label, changes)
    sweeps = {
        "flat": [("", {})],
        "hnsw": [(f"efSearch {ef}", {"ef_search": ef}) for ef in (64, 128, 256, 512)],
        "ivfflat": [(f"nprobe {n}", {"nprobe": n}) for n in (16, 64)],
        "ivfpq": [(f"nprobe {n}, refine x{k}", {"nprobe": n, "k_factor": k}) for n, k in ((16, 4), (32, 8), (64, 16),
                                                                                       (128, 16))],
    }
    exact = exact_filtered = exact_broad = None
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name, setting in builds.items():
            start = time.perf_counter()
            gallery = Gallery.build(vectors, metadata, "benchmark", setting)
            build = time.perf_counter() - start
            path = Path(folder) / name
            gallery.save(path)
            bytes_per_vector = (path / "index.faiss").stat().st_size / args.size
            for label, changes in sweeps[name]:
                for key, value in changes.items():
                    setattr(gallery.settings, key, value)
                found = result_ids(gallery.search(queries, 10))
                filtered = result_ids(gallery.search(queries[:100], 10, camids=[99]))
                broad = result_ids(gallery.search(queries[:100], 10, modality="vis"))
                if exact is None:
                    exact, exact_filtered, exact_broad = found, filtered, broad
                recall = knn_intersection_measure(found, exact)
                filtered_recall = knn_intersection_measure(filtered, exact_filtered)
                broad_recall = knn_intersection_measure(broad, exact_broad)
                single = queries_per_second(gallery, queries, 1, 20 if name == "flat" else 300)
                batched = queries_per_second(gallery, queries, 1000, 2)
                rows.append([f"{name} {label}".strip(), f"{build:.1f}", f"{bytes_per_vector:.0f}", f"{single:.0f}",
                             f"{batched:.0f}", f"{recall:.3f}", f"{filtered_recall:.3f}", f"{broad_recall:.3f}"])
            print(f"done {name}", file=sys.stderr, flush=True)
            del gallery
    flat_single, flat_batched = float(rows[0][3]), float(rows[0][4])
    for row in rows:
        row.insert(4, f"{float(row[3]) / flat_single:.0f}x")
        row.insert(6, f"{float(row[5]) / flat_batched:.1f}x")
    print(f"faiss {faiss.__version__}, {args.threads} threads, {args.size:,} x {args.dim}, {args.clusters:,} clusters, "
          f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB\n")
    print(markdown_table(["index and search setting", "build (s)", "bytes / vector", "queries/s, batch 1", "vs flat",
                          "queries/s, batch 1000", "vs flat", "recall@10 vs flat",
                          "selective filter: recall@10 vs flat", "broad filter: recall@10 vs flat"],
                         rows))


def result_ids(results) -> np.ndarray:
    """Search results as a (queries, 10) id table (-1 where a query got fewer)."""
    table = np.full((len(results), 10), -1, np.int64)
    for row, hits in enumerate(results):
        table[row, :len(hits)] = [int(hit.path) for hit in hits]
    return table


if __name__ == "__main__":
    main()
