"""The README's two set-up commands are the ones CI and users run, and its demo figures are the demo's."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


def setup_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Set up", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", section)


def test_readme_has_two_setup_commands_that_create_the_venv():
    commands = setup_commands()
    assert len(commands) == 2
    assert all(c.startswith("python3 -m venv .venv && .venv/bin/pip install -e ") for c in commands)


def test_ci_runs_exactly_the_readme_test_command():
    test_command = setup_commands()[1]
    assert test_command.endswith(".venv/bin/pytest")
    ci_lines = [line for line in (ROOT / ".ci/run").read_text().splitlines() if line and not line.startswith("#")]
    assert test_command in ci_lines


def readme_demo_figures() -> list[float]:
    """The four mAP figures the README quotes for the demo: ir2vis untrained, trained, vis2ir untrained, trained."""
    section = (ROOT / "README.md").read_text().split("## Set up", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"\*\*mAP ([\d.]+)% untrained -> ([\d.]+)%\s+trained\*\* \(infrared -> visible\) and "
                      r"\*\*([\d.]+)% -> ([\d.]+)%\*\* \(visible -> infrared\)", section)
    assert match, "the README's demo sentence changed shape"
    return [float(value) for value in match.groups()]


@pytest.mark.slow
def test_the_readme_demo_figures_are_what_the_demo_prints_from_any_directory(tmp_path):
    """Runs the README's demo command (three minutes on two cores) outside the repository."""
    reid = Path(sys.executable).with_name("reid")
    result = subprocess.run([str(reid), "demo"], cwd=tmp_path, capture_output=True, text=True, timeout=1200,
                            env=os.environ | {"COLUMNS": "200"})
    assert result.returncode == 0, result.stderr[-3000:]
    printed = re.search(r"mAP untrained -> trained: ir2vis ([\d.]+)% -> ([\d.]+)%, vis2ir ([\d.]+)% -> ([\d.]+)%",
                        result.stdout.replace("\n", " "))
    assert printed, result.stdout[-2000:]
    measured = [float(value) for value in printed.groups()]
    quoted = readme_demo_figures()
    # untrained figures are one forward pass; trained ones allow for another CPU's float rounding
    for value, expected, tolerance in zip(measured, quoted, (0.2, 1.5, 0.2, 1.5), strict=True):
        assert abs(value - expected) <= tolerance, (measured, quoted)
    assert (tmp_path / "runs/demo/rank_lists.png").is_file() and (tmp_path / "data/demo-llcm/idx").is_dir()
