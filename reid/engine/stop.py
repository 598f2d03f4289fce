"""Stop signals: Ctrl-C and SIGTERM (a time limit, a preemption) end a long command with how to continue it.

Torch-free, so the command line can catch a stop without loading the engine.
"""
from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class Stopped(Exception):  # noqa: N818  (not an error: the user asked for it)
    """A command stopped by Ctrl-C (exit code 130) or SIGTERM (143).

    Attributes:
        message: What stopped it and how to continue.
        exit_code: 130 or 143, as a shell reports the two signals.
    """

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.message, self.exit_code = message, exit_code


@contextmanager
def stop_signals(hint: Callable[[], str]) -> Iterator[None]:
    """Make SIGTERM stop the block the way Ctrl-C does, and turn either into ``Stopped`` with ``hint()`` (asked
    when the stop happens, so it can say what was kept) after the reason."""
    reason = ["interrupted", 130]

    def terminated(signum, frame) -> None:
        reason[:] = ["terminated (SIGTERM)", 143]
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, terminated)
    except ValueError:  # not the main thread: leave signals alone
        previous = None
    try:
        yield
    except KeyboardInterrupt:
        raise Stopped(f"{reason[0]}; {hint()}", int(reason[1])) from None
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
