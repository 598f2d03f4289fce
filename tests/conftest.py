"""Fixtures shared across test folders."""
import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def readme_demo(tmp_path_factory):
    """The README's demo command, run once outside the repository (two and a half minutes on two cores): the
    process result and the directory it ran in (runs/demo/ and data/demo-llcm/ are there)."""
    where = tmp_path_factory.mktemp("readme-demo")
    reid = Path(sys.executable).with_name("reid")
    result = subprocess.run([str(reid), "demo"], cwd=where, capture_output=True, text=True, timeout=1200,
                            env=os.environ | {"COLUMNS": "200"})
    assert result.returncode == 0, result.stderr[-3000:]
    return result, where
