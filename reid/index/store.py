"""Gallery directories on disk: ``index.faiss``, ``metadata.jsonl`` and ``manifest.json``, written atomically.

A save writes a staging directory (its name unique to the process) and swaps it in with two renames, so the
gallery's path always names a complete gallery, old or new. A process that changes a gallery holds
``gallery_lock`` from load to save, so concurrent writers take turns instead of one silently losing the other's
items; the save itself takes the lock too. A reader takes no lock: it opens the directory once and reads the three
files of that one version (a version a save swaps out stays readable through the open directory), so it sees one
consistent gallery whatever a writer does meanwhile. A crash between a save's two renames is repaired by the next
process that takes the lock (the complete new copy is put in place), and staging or old copies that crashed
processes left behind are removed then.

The manifest records what the gallery is (backbone, checkpoint digest, embedding size, normalisation, index
settings and FAISS factory string, item count) and the sha256 of the two data files written with it, so a manifest
copied from another gallery, or a file changed behind its back, is refused on load. A gallery reached through a
symbolic link is read, locked and written where the link points.
"""
from __future__ import annotations

import glob
import json
import os
import re
import shutil
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

from reid.errors import refuse
from reid.index.metadata import MetadataTable
from reid.index.settings import GalleryError, IndexSettings, one_line
from reid.io import directory as directory_exists
from reid.io import exclusive_lock, file_digest, umask

FORMAT_VERSION = 1
MAX_MANIFEST_BYTES = 1 << 20  # a manifest is a page of settings
INDEX_FILE, METADATA_FILE, MANIFEST_FILE = "index.faiss", "metadata.jsonl", "manifest.json"


class Manifest(BaseModel):
    """What a gallery is: checked against the model that queries it."""

    model_config = ConfigDict(extra="forbid")

    backbone: StrictStr
    embedding_size: StrictInt = Field(ge=1)
    index: IndexSettings
    factory: StrictStr | None = None  # FAISS's factory string (galleries saved before it was recorded have none)
    items: StrictInt = Field(0, ge=0)
    next_item_id: StrictInt | None = Field(None, ge=0)  # the id the next added item gets (ids are never reused)
    version: StrictInt = Field(0, ge=0)  # changes at every save and never repeats (see save_gallery)
    checkpoint_digest: StrictStr | None = None
    normalization: StrictStr = "l2"
    metric: StrictStr = "inner_product"
    format_version: StrictInt = FORMAT_VERSION
    extra: dict = Field(default_factory=dict)

    def check_model(self, backbone: str, embedding_size: int, checkpoint_digest: str | None) -> None:
        """Refuse a model other than the one that built the gallery (to add with or query with), saying what
        differs."""
        differences = []
        if backbone != self.backbone:
            differences.append(f"backbone {backbone!r} vs gallery {self.backbone!r}")
        if embedding_size != self.embedding_size:
            differences.append(f"embedding size {embedding_size} vs gallery {self.embedding_size}")
        if checkpoint_digest != self.checkpoint_digest:
            differences.append(f"checkpoint {(checkpoint_digest or 'none')[:12]} vs gallery "
                               f"{(self.checkpoint_digest or 'none')[:12]}")
        if differences:
            raise GalleryError("the query model does not match the gallery: " + "; ".join(differences))


class ManifestFile(Manifest):
    """The manifest as stored: the manifest and what it was written with."""

    total_rows: StrictInt = Field(ge=0)
    files: dict[StrictStr, StrictStr] | None = None  # sha256 per data file (older galleries have none)


@dataclass
class StoredGallery:
    """The three parts of a gallery directory, as read."""

    manifest: Manifest
    settings: IndexSettings
    index: faiss.Index
    table: MetadataTable


def gallery_path(directory: str | Path) -> Path:
    """Where a gallery is: the path with symbolic links resolved (so the lock, the staging copy and the swap are
    all on the real directory); a path that cannot name a gallery directory is a GalleryError."""
    resolved = Path(directory).resolve()
    if not resolved.name or resolved == resolved.parent:
        raise GalleryError(f"{directory}: cannot be a gallery directory (give a folder's name, e.g. runs/gallery)")
    return resolved


@contextmanager
def gallery_lock(directory: str | Path, timeout: float = 600.0,
                 waiting: Callable[[str], None] | None = None) -> Iterator[Path]:
    """Hold the exclusive lock of a gallery directory (a ``.NAME.lock`` file beside it, since the directory itself
    is swapped on save), repair what a crashed save left, and yield the gallery's real path. The operating system
    releases the lock if the process dies. The thread that holds it may take it again; another thread of the same
    process waits for it as another process does (``reid.io.exclusive_lock``).

    Args:
        timeout: Seconds to wait for another process's lock before giving up with a GalleryError.
        waiting: Called once, with the holder, if the lock is held by another process (to tell the user).
    """
    directory = gallery_path(directory)
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise GalleryError(f"{directory.parent}: cannot be created ({error.strerror or error})") from None
    with exclusive_lock(directory.with_name(f".{directory.name}.lock"), f"the gallery {directory}", timeout, waiting,
                        GalleryError):
        _repair(directory)
        yield directory


def _leftovers(directory: Path, kind: str) -> list[Path]:
    """The staging ("saving") or previous ("old") copies that saves of this gallery left, oldest first. The
    gallery's name is taken literally (a name with glob characters, or one that begins like another gallery's
    leftover, matches only its own)."""
    prefix = f".{directory.name}.{kind}-"
    found = [entry for entry in directory.parent.glob(glob.escape(prefix) + "*")
             if re.fullmatch(r"[A-Za-z0-9_]+", entry.name[len(prefix):])]
    return sorted(found, key=lambda p: p.stat().st_mtime)


GALLERY_FILES = frozenset({INDEX_FILE, METADATA_FILE, MANIFEST_FILE})


def replace_problems(directory: str | Path, overwrite: bool) -> list[str]:
    """Why a new gallery may not be written to ``directory``: it holds a gallery and ``overwrite`` was not given,
    or it holds anything that is not a gallery (a gallery replaces only a gallery, never a user's folder)."""
    directory = Path(directory)
    if not os.path.lexists(directory):
        return []
    if not directory_exists(directory):
        return [f"--out {directory}: is a file, not a gallery directory"]
    try:
        entries = sorted(os.listdir(directory))
    except OSError as error:
        return [f"--out {directory}: cannot be read ({error.strerror or error})"]
    if not entries:
        return []
    others = [name for name in entries if name not in GALLERY_FILES]
    if others or MANIFEST_FILE not in entries:
        shown = ", ".join(others[:5] or entries[:5]) + (f" (+{len(others) - 5} more)" if len(others) > 5 else "")
        return [f"--out {directory}: holds files that are not a gallery's ({shown}); a gallery only ever replaces a "
                f"gallery, so give another --out"]
    if not overwrite:
        return [f"--out {directory}: already holds a gallery; add to it with reid index add, or replace it with "
                f"--overwrite"]
    return []


def _repair(directory: Path) -> None:
    """Under the lock: finish a save that crashed between its two renames, and remove what crashed saves left."""
    if not directory.exists():
        complete = [s for s in _leftovers(directory, "saving") if _is_complete(s)]
        previous = _leftovers(directory, "old")
        if complete:
            complete[-1].rename(directory)
        elif previous:
            previous[-1].rename(directory)
    for leftover in _leftovers(directory, "saving") + _leftovers(directory, "old"):
        shutil.rmtree(leftover, ignore_errors=True)


def _is_complete(folder: Path) -> bool:
    try:
        record = ManifestFile.model_validate_json((folder / MANIFEST_FILE).read_bytes())
        return record.files is not None and all(record.files.get(name) == file_digest(folder / name)
                                                for name in (INDEX_FILE, METADATA_FILE))
    except (OSError, ValueError):
        return False


def save_gallery(directory: str | Path, manifest: Manifest, index: faiss.Index, table: MetadataTable) -> Path:
    """Write a gallery to ``directory``, which always holds a complete gallery (the old one until the new one is
    whole); returns its real path. A full disk or an unwritable place is a GalleryError and leaves nothing
    behind."""
    with gallery_lock(directory) as directory:
        refuse([problem.replace("--out ", "", 1) for problem in replace_problems(directory, True)], GalleryError)
        backup = directory.with_name(f".{directory.name}.old-{os.getpid()}")
        staging = None
        try:
            staging = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}.saving-"))
            os.chmod(staging, 0o777 & ~umask())  # mkdtemp makes 0700; a gallery is shared like any folder
            faiss.write_index(index, str(staging / INDEX_FILE))
            manifest.next_item_id = table.ids_from(manifest.next_item_id or 0)
            (staging / METADATA_FILE).write_text(table.to_jsonl())
            manifest.items = table.live_count
            manifest.version = max(manifest.version + 1, time.time_ns())  # a clock that went back still counts up
            record = ManifestFile(**manifest.model_dump(), total_rows=len(table), files={
                name: file_digest(staging / name) for name in (INDEX_FILE, METADATA_FILE)})
            (staging / MANIFEST_FILE).write_text(record.model_dump_json(indent=2) + "\n")
            if directory.exists():
                directory.rename(backup)
                staging.rename(directory)
                shutil.rmtree(backup)
            else:
                staging.rename(directory)
        except (OSError, RuntimeError) as error:  # FAISS reports a full disk as a RuntimeError
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)
            if backup.exists() and not directory.exists():
                backup.rename(directory)
            reason = error.strerror if isinstance(error, OSError) and error.strerror else \
                str(error).strip().splitlines()[-1][:200]
            raise GalleryError(f"{directory}: cannot write the gallery ({reason})") from None
    return directory


def load_gallery(directory: str | Path) -> StoredGallery:
    """Read and cross-check one version of a gallery directory; every way it can be broken is a GalleryError naming
    the file. A save running meanwhile is never seen half-done."""
    given, directory = directory, gallery_path(directory)
    for attempt in range(50):
        try:
            handle = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        except FileNotFoundError:
            if attempt < 20:  # a save may be between its two renames
                time.sleep(0.005)
                continue
            if not (_leftovers(directory, "saving") or _leftovers(directory, "old")):
                raise GalleryError(f"{given}: not a gallery (no such directory)") from None
            with gallery_lock(directory):  # a save crashed between its renames: the lock's holder repairs it
                pass
            continue
        except NotADirectoryError:
            raise GalleryError(f"{given}: not a gallery (a file, not a directory)") from None
        try:
            return _read_version(directory, handle)
        except FileNotFoundError:  # the version was swapped out and removed while being opened: read the new one
            time.sleep(0.005)
        finally:
            os.close(handle)
    raise GalleryError(f"{given}: changed too often to be read; try again")


def _read_version(directory: Path, folder: int) -> StoredGallery:
    """The gallery in the open directory ``folder`` (a FileNotFoundError means it was swapped out)."""
    def opener(path: str, flags: int) -> int:
        # non-blocking: a FIFO in a file's place would block the open until a writer came; only a regular file
        # is read (a FIFO, a device such as /dev/zero or a directory would never end a read, or fail in FAISS)
        handle = os.open(path, flags | os.O_NONBLOCK, dir_fd=folder)
        if not stat.S_ISREG(os.fstat(handle).st_mode):
            os.close(handle)
            raise GalleryError(f"{directory / path}: not a regular file")
        return handle

    def read_error(name: str, error: OSError) -> GalleryError:
        return GalleryError(f"{directory / name}: cannot be read ({error.strerror or error})")

    manifest_path = directory / MANIFEST_FILE
    try:
        with open(MANIFEST_FILE, "rb", opener=opener) as handle:
            raw = handle.read(MAX_MANIFEST_BYTES + 1)
    except FileNotFoundError:
        if _swapped(directory, folder):
            raise  # a version being swapped out and removed: read the new one
        raise GalleryError(f"{directory}: not a gallery (no {MANIFEST_FILE})") from None
    except OSError as error:
        raise read_error(MANIFEST_FILE, error) from None
    if len(raw) > MAX_MANIFEST_BYTES:
        raise GalleryError(f"{manifest_path}: more than {MAX_MANIFEST_BYTES:,} bytes; not a gallery's manifest")
    record = _manifest(raw, manifest_path)
    settings = record.index
    for name in (INDEX_FILE, METADATA_FILE):
        if name not in os.listdir(folder) and not _swapped(directory, folder):
            raise GalleryError(f"{directory / name}: missing")
    def opened(files: ExitStack, name: str):
        try:
            return files.enter_context(open(name, "rb", opener=opener))
        except OSError as error:
            if isinstance(error, FileNotFoundError):
                raise  # swapped out meanwhile: the caller reads the new version
            raise read_error(name, error) from None

    with ExitStack() as files:
        index_handle, metadata_handle = opened(files, INDEX_FILE), opened(files, METADATA_FILE)
        if record.files is not None:  # galleries saved before the digests were recorded have none
            for name, handle in ((INDEX_FILE, index_handle), (METADATA_FILE, metadata_handle)):
                if record.files.get(name) != file_digest(f"/proc/self/fd/{handle.fileno()}"):
                    raise GalleryError(f"{directory / name}: does not match its manifest (the files come from "
                                       f"different galleries or were changed); rebuild the gallery")
        try:
            index = faiss.read_index(f"/proc/self/fd/{index_handle.fileno()}")
        except RuntimeError as error:
            raise GalleryError(f"{directory / INDEX_FILE}: truncated or corrupt index file "
                               f"({str(error).splitlines()[0][:200]})") from None
        try:
            text = metadata_handle.read().decode()
        except UnicodeDecodeError as error:
            raise GalleryError(f"{directory / METADATA_FILE}: unreadable metadata ({error})") from None
    table = MetadataTable.from_jsonl(text, str(directory / METADATA_FILE))
    if index.ntotal != record.total_rows or len(table) != record.total_rows:
        raise GalleryError(f"{directory}: index holds {index.ntotal} vectors and metadata {len(table)} rows, "
                           f"the manifest says {record.total_rows}; the gallery is incomplete, rebuild it")
    if index.d != record.embedding_size:
        raise GalleryError(f"{directory / INDEX_FILE}: vectors of size {index.d}, the manifest says "
                           f"{record.embedding_size}")
    found = faiss.downcast_index(index)
    if not isinstance(found, getattr(faiss, settings.kind.faiss_class)):
        raise GalleryError(f"{directory / INDEX_FILE}: an {type(found).__name__}, but the manifest says a "
                           f"{settings.type} index ({settings.kind.faiss_class})")
    manifest = Manifest(**record.model_dump(exclude={"total_rows", "files"}))
    if manifest.next_item_id is None:  # saved before items had ids of their own: their ids are their rows
        table.ids = np.where(table.ids < 0, np.arange(len(table)), table.ids)
        manifest.next_item_id = len(table)
    return StoredGallery(manifest, settings, index, table)


def _swapped(directory: Path, folder: int) -> bool:
    """Whether ``directory`` no longer names the directory open as ``folder`` (a save swapped it)."""
    try:
        return os.stat(directory).st_ino != os.fstat(folder).st_ino
    except FileNotFoundError:
        return True


def _manifest(raw: bytes, path: Path) -> ManifestFile:
    try:
        record = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise GalleryError(f"{path}: corrupt manifest ({error})") from None
    except RecursionError:
        raise GalleryError(f"{path}: corrupt manifest (nested too deeply)") from None
    if isinstance(record, dict) and record.get("format_version", FORMAT_VERSION) != FORMAT_VERSION:
        raise GalleryError(f"{path}: gallery format {record['format_version']}, this version reads "
                           f"{FORMAT_VERSION}; rebuild the gallery")
    try:
        return ManifestFile.model_validate(record)
    except ValidationError as error:
        raise GalleryError(f"{path}: corrupt manifest ({one_line(error)})") from None
