"""CPU threads sized to the CPU this process may use, before torch starts (no torch here).

On a CPU, PyTorch runs each operation on a pool of OpenMP threads (one per core it sees) and the data loader adds
worker processes. Two things make that slow on a machine that is not the process's alone:

* the cores the process *may* use are fewer than the machine's when its CPU affinity or its container's CPU quota
  (cgroup ``cpu.max`` / ``cpu.cfs_quota_us``) says so, and more threads than those only queue;
* when other processes hold cores, every operation's threads wait for the one the scheduler put aside: OpenMP
  threads that finished spin (busy-wait) for it, and an operation that takes microseconds takes milliseconds.

So ``plan`` sizes the pool: the ``--threads`` setting (or ``OMP_NUM_THREADS``) when given, else the usable cores
less the ones other processes are running on right now, at least one, with a note when that is fewer than the
cores; and the loading workers with it: on an idle machine they sleep most of the time (the pipeline is tens of
times faster than a training step, BENCHMARKS.md) and take no thread, on a busy one a single worker competes for
less. Waiting passively (``OMP_WAIT_POLICY=PASSIVE``) instead of spinning was measured too and is not the
default: it makes every operation of an idle machine wait for its threads to wake (0.72x the training rate, 2.7x
the latency of a one-image query), while one thread on a busy machine has nobody to wait for
(``benchmarks/bench_cpu_contention.py``). ``apply`` gives the plan to torch.
"""
from __future__ import annotations

import math
import os
import time
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


def running_elsewhere(samples: int = 20, interval: float = 0.005, loadavg: Path = Path("/proc/loadavg")) -> float:
    """How many other processes are running right now: the kernel's count of runnable tasks (``/proc/loadavg``'s
    fourth field, which counts the reader too), averaged over ``samples`` readings; 0 where there is no such
    file. The one-minute load average is not used: it still counts what this process itself ran a minute ago."""
    counts = []
    for number in range(samples):
        try:
            counts.append(int(loadavg.read_text().split()[3].split("/")[0]) - 1)
        except (OSError, ValueError, IndexError):
            return 0.0
        if number + 1 < samples:
            time.sleep(interval)
    return max(0.0, sum(counts) / len(counts))


def environment_threads() -> int | None:
    """The threads ``OMP_NUM_THREADS`` asks for, when it is a positive number."""
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


@dataclass(frozen=True)
class ThreadPlan:
    """How many threads a process runs torch's operations on, and why.

    Attributes:
        threads: torch's intra-op threads.
        workers: Data loading workers, when none are asked for.
        cores: The cores the process may use.
        others: Processes that were running elsewhere when planned.
        note: One line for the user when the plan uses fewer threads than cores because the machine is busy.
    """

    threads: int
    workers: int
    cores: int
    others: float
    note: str | None = None


def plan(requested: int | None = None, cores: int | None = None, others: float | None = None) -> ThreadPlan:
    """The threads for torch: ``requested`` (the ``--threads`` setting, else ``OMP_NUM_THREADS``) when given, else
    the usable cores less those other processes run on now (rounded up), at least one; and the loading workers:
    one per core up to 4, or one on a busy machine."""
    cores = usable_cores() if cores is None else cores
    idle_workers = min(4, cores)
    requested = requested or environment_threads()
    if requested is not None:
        return ThreadPlan(requested, idle_workers, cores, 0.0)
    others = running_elsewhere() if others is None else others
    threads = max(1, cores - math.ceil(others - 0.25))  # a process that ran a quarter of the time takes no core
    if threads >= cores:
        return ThreadPlan(cores, idle_workers, cores, others)
    return ThreadPlan(threads, 1, cores, others,
                      f"the machine is busy ({others:.1f} other processes running on {cores} usable "
                      f"core{'s' if cores != 1 else ''}), so torch runs on {threads} thread"
                      f"{'s' if threads != 1 else ''}; --threads N (or the threads setting) chooses")


def apply(thread_plan: ThreadPlan) -> None:
    """Give the plan to torch."""
    import torch

    if torch.get_num_threads() != thread_plan.threads:
        torch.set_num_threads(thread_plan.threads)
