"""Interleaved timing for noisy machines: every candidate runs once per round, so drift hits all alike.

Results are medians over rounds; benchmarks report ratios against a peer measured in the same run.
"""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def interleaved_medians(
        candidates: dict[str, Callable[[], object]],
        rounds: int = 7,
        warmup: int = 2,
) -> dict[str, float]:
    """Median seconds per call of each candidate, measured round-robin."""
    for function in candidates.values():
        for _ in range(warmup):
            function()
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(rounds):
        for name, function in candidates.items():
            start = time.perf_counter()
            function()
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in samples.items()}


def markdown_table(header: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)
