"""Atomic file writes: a crash or Ctrl-C never leaves a half-written checkpoint, index or report in place."""
from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from reid.errors import ReidError


def atomic_write(path: str | Path, write: Callable[[Path], Any]) -> Path:
    """Call ``write(temporary_path)`` then rename the temporary file over ``path`` (same directory, so the
    rename is atomic); the old file stays intact until the new one is complete."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        write(Path(temporary))
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def ensure_writable(path: str | Path) -> Path:
    """Check before long work that ``path`` can be written (its folder is made); a ReidError names it if not."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".probe")
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        raise ReidError(f"{path}: cannot be written ({error.strerror or error})") from None
    if path.is_dir():
        raise ReidError(f"{path}: is a directory, not a file")
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda temporary: temporary.write_text(text))


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    return atomic_write(path, lambda temporary: torch.save(obj, temporary))
