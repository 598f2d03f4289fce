"""The package's import rule (reid/__init__.py): a module imports only from its own layer and the ones before it;
the command line's startup and ``reid.config`` load no torch."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[1] / "reid"
LAYERS = [
    {"reid.errors", "reid.io", "reid.settings", "reid.catalogue", "reid.threads"},
    {"reid.data"},
    {"reid.models"},
    {"reid.losses", "reid.metric_losses", "reid.metrics", "reid.rerank", "reid.report", "reid.retrieval",
     "reid.visualize", "reid.profiling", "reid.index", "reid.config", "reid.runs"},
    {"reid.engine"},
    {"reid.serve"},
    {"reid.cli", "reid.__main__"},
]


def layer_of(module: str) -> int:
    for number, layer in enumerate(LAYERS):
        if any(module == name or module.startswith(name + ".") for name in layer):
            return number
    raise AssertionError(f"{module} is in no layer of reid/__init__.py")


def modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if name != "reid":
            yield name, path


@pytest.mark.parametrize("module, path", list(modules()), ids=lambda value: str(value))
def test_a_module_imports_nothing_from_a_later_layer(module, path):
    own = layer_of(module)
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("reid"):
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names if alias.name.startswith("reid")]
        else:
            continue
        for name in names:
            if name != "reid":
                assert layer_of(name) <= own, f"{module} (layer {own + 1}) imports {name} (layer {layer_of(name) + 1})"


def test_the_command_line_and_the_config_load_no_torch():
    code = ("import sys, reid.cli, reid.config, reid.catalogue; heavy = [m for m in ('torch', 'timm', 'faiss', "
            "'albumentations', 'cv2') if m in sys.modules]; print(heavy)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
