"""CPU threads sized to the CPU this process may use, before torch starts (no torch here).

On a CPU, PyTorch runs each operation on a pool of OpenMP threads (one per core it sees) and the data loader adds
worker processes. Two things make that slow on a machine that is not the process's alone:

* the cores the process *may* use are fewer than the machine's when its CPU affinity or its container's CPU quota
  (cgroup ``cpu.max`` / ``cpu.cfs_quota_us``) says so, and more threads than those only queue;
* OpenMP threads that finish early spin (busy-wait) for the others; when another process holds a core, the one
  thread that is behind waits for the scheduler while the others burn their time slices, and an operation that
  takes microseconds takes milliseconds (measured: ``benchmarks/bench_cpu_contention.py``, BENCHMARKS.md).

So ``configure`` (called by the command line before torch is imported) asks OpenMP to wait passively
(``OMP_WAIT_POLICY=PASSIVE``, unless the user set it), and ``plan`` sizes the pool: the ``--threads`` setting when
given, else the usable cores, less the loader workers beyond the first (each takes a core while it decodes and
augments), and one thread when the machine is already busy (its load average above those cores), with a note that
says so. ``apply`` gives the plan to torch.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def cgroup_cpu_limit(root: Path = CGROUP_ROOT, membership: Path = Path("/proc/self/cgroup")) -> float | None:
    """The CPUs this process's control group may use (its quota over its period), or None when unlimited.

    cgroup v2 (``cpu.max``: "QUOTA PERIOD" or "max PERIOD") and v1 (``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``,
    -1 for none); the tightest limit on the way from the process's group up to the root counts.
    """
    try:
        lines = membership.read_text().splitlines()
    except OSError:
        return None
    limits = []
    for line in lines:
        _, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if controllers == "":  # v2: one unified hierarchy
            limits += _limits(root, path, _v2_limit)
        elif "cpu" in controllers.split(","):
            limits += _limits(root / controllers, path, _v1_limit) + _limits(root / "cpu", path, _v1_limit)
    return min(limits) if limits else None


def _limits(base: Path, path: str, read) -> list[float]:
    """The limits ``read`` finds in ``base / path`` and its parents up to ``base``."""
    found = []
    folder = base / path.strip("/")
    while True:
        limit = read(folder)
        if limit is not None:
            found.append(limit)
        if folder == base or base not in folder.parents:
            return found
        folder = folder.parent


def _v2_limit(folder: Path) -> float | None:
    try:
        quota, period = (folder / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        return None


def _v1_limit(folder: Path) -> float | None:
    try:
        quota = int((folder / "cpu.cfs_quota_us").read_text())
        period = int((folder / "cpu.cfs_period_us").read_text())
        return None if quota <= 0 or period <= 0 else quota / period
    except (OSError, ValueError):
        return None


def usable_cores() -> int:
    """Cores this process may run on: its CPU affinity, within its control group's quota (at least one)."""
    cores = len(os.sched_getaffinity(0))
    quota = cgroup_cpu_limit()
    if quota is not None:
        cores = min(cores, max(1, math.floor(quota)))
    return max(1, cores)


def machine_load() -> float:
    """Processes running or waiting for a CPU, averaged over the last minute."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return 0.0


@dataclass(frozen=True)
class ThreadPlan:
    """How many threads a process runs torch's operations on, and why.

    Attributes:
        threads: torch's intra-op threads.
        cores: The cores the process may use.
        load: The machine's load average when planned.
        note: One line for the user when the plan differs from the cores (a busy machine), else None.
    """

    threads: int
    cores: int
    load: float
    note: str | None = None


def plan(requested: int | None = None, workers: int = 0, cores: int | None = None,
         load: float | None = None) -> ThreadPlan:
    """The threads for torch: ``requested`` (the ``--threads`` setting) when given, else the usable cores less
    the loader ``workers`` beyond the first, and 1 when the machine's load already exceeds the cores."""
    cores = usable_cores() if cores is None else cores
    load = machine_load() if load is None else load
    if requested is not None:
        return ThreadPlan(requested, cores, load)
    threads = max(1, cores - max(0, workers - 1))
    if load > cores and threads > 1:
        return ThreadPlan(1, cores, load, f"the machine is busy (load {load:.1f} on {cores} usable "
                                          f"core{'s' if cores != 1 else ''}), so torch runs on 1 thread; "
                                          f"--threads N (or the threads setting) chooses")
    return ThreadPlan(threads, cores, load)


def configure() -> None:
    """Before torch is imported: OpenMP threads wait passively (``OMP_WAIT_POLICY=PASSIVE``) instead of spinning,
    unless the environment already says how they wait."""
    if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"


def apply(thread_plan: ThreadPlan) -> None:
    """Give the plan to torch (and to OpenCV, which loader workers use for resizing)."""
    import torch

    if torch.get_num_threads() != thread_plan.threads:
        torch.set_num_threads(thread_plan.threads)
