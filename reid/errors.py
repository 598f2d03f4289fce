"""The one error type for bad input a user can fix (a file, an option, a config key), and the check for optional
packages.

The library raises subclasses with a message that names the culprit; the CLI prints the message on one line
and exits with code 2, without a traceback. An error may carry several problems (all the command line found wrong
at once): one line each. Anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable


class ReidError(ValueError):
    """Bad input: a missing or malformed file, an unknown name, an option out of range.

    Args:
        messages: What is wrong, one message per problem (the command line prints each after ``error:``).
    """

    def __init__(self, *messages: str) -> None:
        super().__init__("\n".join(messages))
        self.messages = list(messages)


def problems_of(*checks: Callable[[], object]) -> list[str]:
    """Run every check and collect the problems of those that raise a ReidError (the others' return values are
    ignored), so that a user hears of every problem at once rather than one per attempt."""
    found: list[str] = []
    for check in checks:
        try:
            check()
        except ReidError as error:
            found += problems_in(error)
    return found


def problems_in(error: ReidError) -> list[str]:
    """The problems an error carries, one message each (a subclass that passes a single message has one)."""
    return list(getattr(error, "messages", None) or [str(error)])


def refuse(problems: Iterable[str], kind: type[ReidError] = ReidError) -> None:
    """Raise one error listing ``problems``, if there are any."""
    problems = list(problems)
    if problems:
        raise kind(*problems)


def require(module: str, extra: str, purpose: str) -> None:
    """A ReidError naming the package and the project's extra that installs it, when ``module`` is missing."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise ReidError(f"{purpose} needs the {module} package: pip install {module}, or the project's {extra} "
                        f"extra (pip install -e '.[{extra}]')")
