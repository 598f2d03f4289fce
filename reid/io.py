"""Atomic file writes: a crash or Ctrl-C never leaves a half-written checkpoint, index or report in place."""
from __future__ import annotations

import glob
import hashlib
import json
import os
import socket
import stat
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from reid.errors import ReidError


def regular_file(path: str | Path) -> bool:
    """Whether ``path`` names a regular file (not a FIFO or a device, which would block or never end a read);
    False for any path that cannot be looked up (a name too long, a loop of links), never an exception."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def directory(path: str | Path) -> bool:
    """Whether ``path`` names a directory; False for any path that cannot be looked up, never an exception."""
    try:
        return stat.S_ISDIR(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


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
    read-only or full disk, a folder that is a file) is a ReidError naming it, and leaves no temporary file.

    Temporary files carry the writer's process id, so the ones a killed writer left are removed by the next
    write of the same file."""
    path = Path(path)
    temporary = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_abandoned(path)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
        os.close(handle)
        os.chmod(temporary, 0o666 & ~umask())
        write(Path(temporary))
        os.replace(temporary, path)
    except (OSError, RuntimeError) as error:  # torch and FAISS report a full disk as a RuntimeError
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)
        reason = error.strerror if isinstance(error, OSError) and error.strerror else \
            (str(error).strip().splitlines() or [type(error).__name__])[-1][:200]
        raise ReidError(f"{path}: cannot be written ({reason})") from None
    except BaseException:
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)
        raise
    return path


def _remove_abandoned(path: Path) -> None:
    """Remove temporary siblings of ``path`` whose writer process no longer runs."""
    for leftover in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        pid = leftover.name[len(path.name) + 2:].split(".", 1)[0]
        if pid.isdigit() and not _running(int(pid)):
            leftover.unlink(missing_ok=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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


@contextmanager
def exclusive_lock(lock_path: str | Path, what: str, timeout: float = 600.0,
                   waiting: Callable[[str], None] | None = None, error: type[ReidError] = ReidError) -> Iterator[None]:
    """Hold the exclusive lock file ``lock_path`` for the block (filelock; the operating system releases it when the
    process dies, so a killed holder never blocks the next one). A thread that holds it may take it again.

    Args:
        what: What the lock guards, for messages ("the gallery runs/g").
        timeout: Seconds to wait for another holder; 0 refuses at once, naming the holder's process.
        waiting: Called once, with the holder's description, if another process holds the lock.
        error: The ReidError type raised when the lock cannot be had.
    """
    from filelock import FileLock, Timeout

    lock_path = Path(lock_path).absolute()
    held = _HELD.__dict__.setdefault("paths", {})
    if lock_path in held:  # this thread holds it already
        yield
        return
    owner = lock_path.with_name(lock_path.name + ".owner")  # who holds it, for the others' messages
    lock = FileLock(str(lock_path))
    try:
        try:
            lock.acquire(timeout=0)
        except Timeout:
            holder = _lock_owner(owner)
            if timeout <= 0:
                raise error(f"{what} is in use by {holder}") from None
            if waiting is not None:
                waiting(holder)
            try:
                lock.acquire(timeout=timeout, poll_interval=0.05)
            except Timeout:
                raise error(f"{what} has been in use by {holder} for {timeout:.0f} s; try again later") from None
    except OSError as problem:
        raise error(f"{lock_path}: cannot create the lock file ({problem.strerror or problem})") from None
    held[lock_path] = lock
    try:
        with suppress(OSError):  # the lock holds without the note; others then name no process
            owner.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
        yield
    finally:
        del held[lock_path]
        lock.release()


_HELD = threading.local()  # the lock files this thread holds


def _lock_owner(owner: Path) -> str:
    try:
        record = json.loads(owner.read_text())
        return f"process {int(record['pid'])} on {record['host']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"
