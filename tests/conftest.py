"""Fixtures shared across test folders."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rank_samples import four_samples  # noqa: F401  (a fixture of the rank-list tests)

from reid.threads import usable_cores

# Tests compare runs bit for bit (a resumed training with an uninterrupted one): both must run on the same number of
# threads, whatever else the machine is doing, so the thread count is fixed for the session (and its subprocesses)
# unless the environment fixes it already (CI's second pass runs with OMP_NUM_THREADS=1).
os.environ.setdefault("OMP_NUM_THREADS", str(usable_cores()))
# The commands' --engine auto exports each new checkpoint to ONNX once (seconds): the command tests, which make a
# checkpoint each, run PyTorch; tests/engine/test_onnx_engine.py and the tests that pass --engine run ONNX Runtime.
os.environ.setdefault("REID_ENGINE", "torch")


@pytest.fixture(scope="session")
def readme_demo(tmp_path_factory):
    """The README's demo command, run once outside the repository (about four minutes on two cores): the
    process result and the directory it ran in (runs/demo/ and data/demo-llcm/ are there)."""
    where = tmp_path_factory.mktemp("readme-demo")
    reid = Path(sys.executable).with_name("reid")
    result = subprocess.run([str(reid), "demo"], cwd=where, capture_output=True, text=True, timeout=1200,
                            env=os.environ | {"COLUMNS": "200"})
    assert result.returncode == 0, result.stderr[-3000:]
    return result, where
