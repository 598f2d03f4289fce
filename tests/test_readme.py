"""The README's two set-up commands are the ones CI and users run, and its demo figures are the demo's."""
import re
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


def setup_section() -> str:
    return (ROOT / "README.md").read_text().split("## Set up", 1)[1].split("\n## ", 1)[0].replace("\n", " ")


def readme_demo_figures() -> list[float]:
    """The four mAP figures the README quotes for the demo: ir2vis untrained, trained, vis2ir untrained, trained."""
    match = re.search(r"\*\*mAP ([\d.]+)% untrained -> ([\d.]+)% trained\*\* \(infrared -> visible\) and "
                      r"\*\*([\d.]+)% -> ([\d.]+)%\*\* \(visible -> infrared\)", setup_section())
    assert match, "the README's demo sentence changed shape"
    return [float(value) for value in match.groups()]


def readme_demo_ranges() -> tuple[tuple[float, float], tuple[float, float], float]:
    """The trained mAP ranges the README gives for other machines (ir2vis, vis2ir), and the margin the test adds."""
    match = re.search(r"ranged \*\*from ([\d.]+) to ([\d.]+)\*\* \(infrared -> visible\) \*\*and from ([\d.]+) "
                      r"to ([\d.]+)\*\* \(visible -> infrared\).*widened by (\d+) points", setup_section())
    assert match, "the README's range sentence changed shape"
    values = [float(value) for value in match.groups()]
    return (values[0], values[1]), (values[2], values[3]), values[4]


def test_the_quoted_figures_lie_in_the_quoted_ranges():
    figures = readme_demo_figures()
    (ir_low, ir_high), (vis_low, vis_high), _ = readme_demo_ranges()
    assert ir_low <= figures[1] <= ir_high and vis_low <= figures[3] <= vis_high


@pytest.mark.slow
def test_the_readme_demo_figures_are_what_the_demo_prints_from_any_directory(readme_demo):
    """Runs the README's demo command (about four minutes on two cores) outside the repository."""
    result, where = readme_demo
    printed = re.search(r"mAP untrained -> trained: ir2vis ([\d.]+)% -> ([\d.]+)%, vis2ir ([\d.]+)% -> ([\d.]+)%",
                        result.stdout.replace("\n", " "))
    assert printed, result.stdout[-2000:]
    measured = [float(value) for value in printed.groups()]
    quoted = readme_demo_figures()
    # the untrained figures are one forward pass of seeded weights: the same everywhere, to rounding
    assert abs(measured[0] - quoted[0]) <= 0.2 and abs(measured[2] - quoted[2]) <= 0.2, (measured, quoted)
    # the trained ones depend on the machine's float rounding: within the range the README gives for that
    (ir_low, ir_high), (vis_low, vis_high), margin = readme_demo_ranges()
    assert ir_low - margin <= measured[1] <= ir_high + margin, (measured, quoted)
    assert vis_low - margin <= measured[3] <= vis_high + margin, (measured, quoted)
    assert (where / "runs/demo/rank_lists.png").is_file() and (where / "data/demo-llcm/idx").is_dir()
