"""The GPU check's script runs its whole plan on a CPU (--quick), and keeps to its time budget; the serve load test
runs end to end on a small scale."""
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "bench_gpu.py"
pytestmark = pytest.mark.slow


def test_the_gpu_check_runs_on_a_cpu_and_writes_every_section(tmp_path):
    out = tmp_path / "gpu.md"
    result = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--quick", "--out", str(out)],
                            capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    written = out.read_text()
    assert written.strip().splitlines()[-1].startswith("done in ")
    for section in ("## Data pipeline", "## Token mixers", "## Inference at 64x32", "## The re-ID training step",
                    "## Targets"):
        assert section in written
    assert "| attnet_t1 | off |" in written and "| released_t1 | off |" in written


def test_a_spent_budget_skips_what_is_left_and_says_so(tmp_path):
    result = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--quick", "--budget", "1"],
                            capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0 and "not run: the budget was spent" in result.stdout


def test_the_serve_load_test_checks_its_writes_and_answers(tmp_path):
    script = SCRIPT.with_name("bench_serve.py")
    result = subprocess.run([sys.executable, str(script), "--run", str(tmp_path / "no-run"), "--clients", "1,2",
                             "--searches", "2", "--out", str(tmp_path), "--engines", "torch,onnxruntime"],
                            capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "every added image is in the gallery on disk; no request got a 4xx or 5xx" in result.stdout
    table = (tmp_path / "bench_serve.md").read_text()
    assert table.count("| batched (--max-batch 32) |") == 4 and table.count("| one at a time (--max-batch 1) |") == 4
    assert "| onnxruntime | batched" in table and "onnxruntime vs torch, batched: 1 client " in table
