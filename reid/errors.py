"""The one error type for bad input a user can fix (a file, an option, a config key), and the check for optional
packages.

The library raises subclasses with a message that names the culprit; the CLI prints the message on one line
and exits with code 2, without a traceback. Anything else is a bug and keeps its traceback.
"""


class ReidError(ValueError):
    """Bad input: a missing or malformed file, an unknown name, an option out of range."""


def require(module: str, extra: str, purpose: str) -> None:
    """A ReidError naming the package and the project's extra that installs it, when ``module`` is missing."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise ReidError(f"{purpose} needs the {module} package: pip install {module}, or the project's {extra} "
                        f"extra (pip install -e '.[{extra}]')")
