"""Measuring speed and memory fairly on noisy machines: interleaved timing, peak memory."""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch


def interleaved_medians(
        candidates: dict[str, Callable[[], object]],
        rounds: int = 7,
        warmup: int = 2,
) -> dict[str, float]:
    """Median seconds per call of each candidate, measured round-robin so drift hits all of them alike."""
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


def peak_memory_mb(function: Callable[[], object], device: torch.device | str = "cpu") -> float:
    """Peak memory growth of one call, in MB: CUDA's allocator statistics, or on Linux CPUs the growth of the
    process's peak resident set (reset before the call), which misses memory reused from earlier frees."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        function()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - before) / 2 ** 20
    status = Path("/proc/self/status")
    if not status.exists():
        function()
        return float("nan")

    def field(name: str) -> float:
        return next(int(line.split()[1]) for line in status.read_text().splitlines() if line.startswith(name)) / 1024

    before = field("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current resident set
    function()
    return field("VmHWM") - before
