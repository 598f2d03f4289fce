"""CPU threads sized to what the process may use: the cgroup quota, the cores other processes run on, the user's
own setting."""
import os

import pytest

from reid import threads


def membership(tmp_path, text):
    path = tmp_path / "self-cgroup"
    path.write_text(text)
    return path


def test_a_cgroup_v2_quota_is_read_up_the_hierarchy(tmp_path):
    root = tmp_path / "cg"
    (root / "slice/job").mkdir(parents=True)
    (root / "slice/cpu.max").write_text("150000 100000\n")
    (root / "slice/job/cpu.max").write_text("max 100000\n")
    assert threads.cgroup_cpu_limit(root, membership(tmp_path, "0::/slice/job\n")) == 1.5
    (root / "slice/cpu.max").write_text("max 100000\n")
    assert threads.cgroup_cpu_limit(root, membership(tmp_path, "0::/slice/job\n")) is None


def test_a_cgroup_v1_quota_counts_and_minus_one_is_none(tmp_path):
    root = tmp_path / "cg"
    (root / "cpu,cpuacct/docker/abc").mkdir(parents=True)
    (root / "cpu,cpuacct/docker/abc/cpu.cfs_quota_us").write_text("200000\n")
    (root / "cpu,cpuacct/docker/abc/cpu.cfs_period_us").write_text("100000\n")
    text = "4:cpu,cpuacct:/docker/abc\n1:memory:/docker/abc\n"
    assert threads.cgroup_cpu_limit(root, membership(tmp_path, text)) == 2.0
    (root / "cpu,cpuacct/docker/abc/cpu.cfs_quota_us").write_text("-1\n")
    assert threads.cgroup_cpu_limit(root, membership(tmp_path, text)) is None
    assert threads.cgroup_cpu_limit(root, tmp_path / "no-such-file") is None


def test_the_usable_cores_are_at_most_the_affinity_and_at_least_one(monkeypatch):
    monkeypatch.setattr(threads, "cgroup_cpu_limit", lambda: 0.5)
    assert threads.usable_cores() == 1
    monkeypatch.setattr(threads, "cgroup_cpu_limit", lambda: None)
    assert threads.usable_cores() == len(os.sched_getaffinity(0))


def test_running_elsewhere_leaves_out_the_reader(tmp_path):
    loadavg = tmp_path / "loadavg"
    loadavg.write_text("2.10 1.50 0.90 3/245 12345\n")
    assert threads.running_elsewhere(samples=3, interval=0, loadavg=loadavg) == 2.0
    loadavg.write_text("garbage")
    assert threads.running_elsewhere(samples=3, interval=0, loadavg=loadavg) == 0.0


@pytest.mark.parametrize("cores, others, planned, workers", [
    (2, 0.0, 2, 2),    # idle: every core, a worker per core
    (2, 0.2, 2, 2),    # a process that ran a fifth of the time takes no core
    (2, 1.0, 1, 1),
    (2, 2.0, 1, 1),    # two busy processes: one thread, one worker (the benchmark's busy case)
    (8, 3.0, 5, 1),
    (1, 5.0, 1, 1),
])
def test_the_plan_takes_the_cores_others_leave(cores, others, planned, workers, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    plan = threads.plan(cores=cores, others=others)
    assert (plan.threads, plan.workers) == (planned, workers)
    assert (plan.note is None) == (planned == cores)
    if plan.note:
        assert f"the machine is busy ({others:.1f} other processes running on {cores} usable" in plan.note
        assert "--threads N" in plan.note


def test_a_setting_or_omp_num_threads_wins_and_says_nothing(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads.plan(cores=2, others=5.0) == threads.ThreadPlan(3, 2, 2, 0.0)
    assert threads.plan(1, cores=2, others=5.0).threads == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "zero")
    assert threads.environment_threads() is None


def test_apply_sets_torch(monkeypatch):
    import torch

    before = torch.get_num_threads()
    try:
        threads.apply(threads.ThreadPlan(1, 1, 2, 0.0))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
