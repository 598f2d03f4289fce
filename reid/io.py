"""Atomic file writes: a crash or Ctrl-C never leaves a half-written checkpoint, index or report in place."""
from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from reid.errors import ReidError


def file_digest(path: str | Path) -> str:
    """sha256 of a file: ties a FAISS gallery to the checkpoint that made it, and a manifest to its files."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def umask() -> int:
    """The process's file-creation mask."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[Path], Any]) -> Path:
    """Call ``write(temporary_path)`` then rename the temporary file over ``path`` (same directory, so the
    rename is atomic); the old file stays intact until the new one is complete. The file gets the permissions
    any new file gets (the umask), not the private 0600 of a temporary file. A path that cannot be written (a
    read-only or full disk, a folder that is a file) is a ReidError naming it."""
    path = Path(path)
    temporary = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(handle)
        os.chmod(temporary, 0o666 & ~umask())
        write(Path(temporary))
        os.replace(temporary, path)
    except OSError as error:
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)
        raise ReidError(f"{path}: cannot be written ({error.strerror or error})") from None
    except BaseException:
        if temporary is not None:
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
    import torch  # here, so the light commands that write files do not load torch

    return atomic_write(path, lambda temporary: torch.save(obj, temporary))
