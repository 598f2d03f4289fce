"""Gallery backends side by side, in one run: FAISS (flat, hnsw) and Milvus (Milvus Lite embedded; flat, hnsw)
through the project's own gallery classes, on clustered vectors of a real model's size (AttNet-T1: 384).

For each backend and size: the build (embeddings in, searchable), adding 1,000 items to the built gallery, the
latency of one query (median of ``--queries``, no filter and with a filter: one modality and not two of five
cameras), and recall@10 against the exact answer (numpy, in float64) with and without the filter.

    python benchmarks/bench_backends.py [--sizes 100000,1000000] [--dim 384] [--queries 200]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np

from reid.index import IndexSettings
from reid.index.backends import build_gallery_at
from reid.report import markdown_table

BACKENDS = [("faiss", "flat"), ("faiss", "hnsw"), ("milvus", "flat"), ("milvus", "hnsw")]


def data(size: int, dim: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(size // 50, 10), dim)).astype(np.float32)
    labels = rng.integers(0, len(centres), size)
    vectors = centres[labels] + 0.5 * rng.standard_normal((size, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    metadata = [{"path": f"/cameras/{i % 5}/{i}.jpg", "pid": int(labels[i]), "camid": int(i % 5),
                 "modality": "vis" if i % 2 else "ir"} for i in range(size)]
    return vectors, metadata


def exact(queries: np.ndarray, vectors: np.ndarray, mask: np.ndarray | None, k: int = 10) -> list[set[int]]:
    found = []
    for start in range(0, len(queries), 50):
        scores = queries[start:start + 50] @ vectors.T
        if mask is not None:
            scores[:, ~mask] = -np.inf
        found += [set(row) for row in np.argpartition(-scores, k, axis=1)[:, :k]]
    return found


def recall(found, expected) -> float:
    return float(np.mean([len({int(hit.path.rsplit("/", 1)[1][:-4]) for hit in hits} & truth) / len(truth)
                          for hits, truth in zip(found, expected, strict=True)]))


def measure(backend: str, kind: str, vectors, metadata, queries, folder: str, size: int) -> dict:
    where = f"{folder}/{backend}-{kind}-{size}" if backend == "faiss" else f"milvus:{folder}/lite-{size}.db/{kind}"
    start = time.perf_counter()
    gallery = build_gallery_at(where, vectors[:-1000], metadata[:-1000], "attnet_t1", IndexSettings(type=kind),
                               "bench")
    built = time.perf_counter() - start
    if backend == "faiss":  # a FAISS gallery is written to disk, then added to under its lock, as the CLI does
        from reid.index.backends import open_store

        store = open_store(where)
        start = time.perf_counter()
        with store.updating() as grown:
            grown.add(vectors[-1000:], metadata[-1000:])
        added = time.perf_counter() - start
        gallery = store.current()
    else:
        start = time.perf_counter()
        gallery.add(vectors[-1000:], metadata[-1000:])
        added = time.perf_counter() - start
    row = {"build (s)": built, "add 1,000 (s)": added}
    for name, filters in (("", {}), (" filtered", {"modality": "ir", "exclude_camids": [{1, 3}]})):
        latencies, found = [], []
        for query in queries:
            begin = time.perf_counter()
            hits = gallery.search(query[None], 10, modality=filters.get("modality"),
                                  exclude_camids=filters.get("exclude_camids"))
            latencies.append(time.perf_counter() - begin)
            found.append(hits[0])
        row[f"ms / query{name}"] = 1000 * statistics.median(latencies)
        row[f"found{name}"] = found
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for size in map(int, args.sizes.split(",")):
            vectors, metadata = data(size, args.dim)
            rng = np.random.default_rng(1)
            picked = rng.choice(size, args.queries, replace=False)
            queries = vectors[picked] + 0.05 * rng.standard_normal((args.queries, args.dim)).astype(np.float32)
            queries /= np.linalg.norm(queries, axis=1, keepdims=True)
            plain = exact(queries, vectors, None)
            mask = np.array([m["modality"] == "ir" and m["camid"] not in (1, 3) for m in metadata])
            filtered = exact(queries, vectors, mask)
            for backend, kind in BACKENDS:
                result = measure(backend, kind, vectors, metadata, queries, folder, size)
                rows.append([f"{size:,}", f"{backend} {kind}", f"{result['build (s)']:.1f}",
                             f"{result['add 1,000 (s)']:.2f}", f"{result['ms / query']:.2f}",
                             f"{recall(result['found'], plain):.3f}", f"{result['ms / query filtered']:.2f}",
                             f"{recall(result['found filtered'], filtered):.3f}"])
                print(" | ".join(rows[-1]), flush=True)
    print(f"\n{args.dim}-d, clustered; one query at a time, medians of {args.queries}; filtered: infrared items not "
          f"from cameras 1 and 3 (30% of the gallery)\n")
    print(markdown_table(["items", "backend", "build (s)", "add 1,000 (s)", "ms / query", "recall@10",
                          "ms / query, filtered", "recall@10, filtered"], rows))


if __name__ == "__main__":
    main()
