"""Gallery directories on disk: ``index.faiss``, ``metadata.jsonl`` and ``manifest.json``, written atomically.

A save writes a staging directory (its name unique to the process) and swaps it in, so a crash never replaces
a good gallery with a broken one. A process that changes a gallery holds ``gallery_lock`` from load to save, so
two concurrent writers take turns instead of one silently losing the other's items. The manifest records what
the gallery is (backbone, checkpoint digest, embedding size, normalisation, index settings, item count) and the
sha256 of the two data files written with it, so a manifest copied from another gallery is refused on load.
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import faiss

from reid.index.metadata import MetadataTable
from reid.index.settings import GalleryError, IndexSettings
from reid.io import file_digest, umask

FORMAT_VERSION = 1
INDEX_FILE, METADATA_FILE, MANIFEST_FILE = "index.faiss", "metadata.jsonl", "manifest.json"


@dataclass
class Manifest:
    """What a gallery is: checked against the model that queries it."""

    backbone: str
    embedding_size: int
    index: dict
    items: int = 0
    checkpoint_digest: str | None = None
    normalization: str = "l2"
    metric: str = "inner_product"
    format_version: int = FORMAT_VERSION
    extra: dict = field(default_factory=dict)


@dataclass
class StoredGallery:
    """The three parts of a gallery directory, as read."""

    manifest: Manifest
    settings: IndexSettings
    index: faiss.Index
    table: MetadataTable


@contextmanager
def gallery_lock(directory: str | Path, timeout: float = 600.0,
                 waiting: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold the exclusive lock of a gallery directory (a ``.NAME.lock`` file beside it, since the directory
    itself is swapped on save). The operating system releases it if the process dies.

    Args:
        timeout: Seconds to wait for another process's lock before giving up with a GalleryError.
        waiting: Called once if the lock is held by another process (to tell the user).
    """
    directory = Path(directory)
    lock_path = directory.with_name(f".{directory.name}.lock")
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        handle = open(lock_path, "a+")  # noqa: SIM115  (held until the end of the with block)
    except OSError as error:
        raise GalleryError(f"{lock_path}: cannot create the gallery's lock file ({error.strerror or error})") from None
    try:
        deadline = time.monotonic() + timeout
        told = False
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not told and waiting is not None:
                    waiting()
                    told = True
                if time.monotonic() > deadline:
                    raise GalleryError(f"{directory}: another process has been writing this gallery for "
                                       f"{timeout:.0f} s; try again later") from None
                time.sleep(0.05)
        yield
    finally:
        handle.close()  # releases the lock


def save_gallery(directory: str | Path, manifest: Manifest, index: faiss.Index, table: MetadataTable) -> Path:
    """Write a gallery to ``directory``, which always holds a complete gallery (the old one until the new one is
    whole)."""
    directory = Path(directory)
    backup = directory.with_name(f".{directory.name}.old-{os.getpid()}")
    staging = None
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}.saving-"))
        os.chmod(staging, 0o777 & ~umask())  # mkdtemp makes 0700; a gallery is shared like any folder
        faiss.write_index(index, str(staging / INDEX_FILE))
        (staging / METADATA_FILE).write_text(table.to_jsonl())
        manifest.items = table.live_count
        record = asdict(manifest) | {"total_rows": len(table), "files": {
            name: file_digest(staging / name) for name in (INDEX_FILE, METADATA_FILE)}}
        (staging / MANIFEST_FILE).write_text(json.dumps(record, indent=2) + "\n")
        if directory.exists():
            directory.rename(backup)
            staging.rename(directory)
            shutil.rmtree(backup)
        else:
            staging.rename(directory)
    except OSError as error:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        raise GalleryError(f"{directory}: cannot write the gallery ({error.strerror or error})") from None
    return directory


def _manifest(path: Path) -> tuple[Manifest, int, dict | None]:
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise GalleryError(f"{path}: corrupt manifest ({error})") from None
    if not isinstance(record, dict):
        raise GalleryError(f"{path}: corrupt manifest (not a JSON object)")
    total_rows, files = record.pop("total_rows", None), record.pop("files", None)
    known = {f.name for f in fields(Manifest)}
    unknown = sorted(set(record) - known)
    if unknown or not isinstance(total_rows, int):
        problem = f"unknown key {', '.join(map(repr, unknown))}" if unknown else "no total_rows"
        raise GalleryError(f"{path}: corrupt manifest ({problem})")
    try:
        manifest = Manifest(**record)
    except TypeError as error:
        raise GalleryError(f"{path}: corrupt manifest ({error})") from None
    if not isinstance(manifest.embedding_size, int) or not isinstance(manifest.backbone, str):
        raise GalleryError(f"{path}: corrupt manifest (backbone and embedding_size have the wrong type)")
    return manifest, total_rows, files


def load_gallery(directory: str | Path) -> StoredGallery:
    """Read and cross-check a gallery directory; every way it can be broken is a GalleryError naming the file."""
    directory = Path(directory)
    manifest_path = directory / MANIFEST_FILE
    if not directory.exists() and any(directory.parent.glob(f".{directory.name}.old-*")):
        raise GalleryError(f"{directory}: a save was interrupted; the previous gallery is intact in "
                           f"{directory.parent}/.{directory.name}.old-*")
    if not manifest_path.is_file():
        raise GalleryError(f"{directory}: not a gallery (no {MANIFEST_FILE})")
    manifest, total_rows, files = _manifest(manifest_path)
    if manifest.format_version != FORMAT_VERSION:
        raise GalleryError(f"{manifest_path}: gallery format {manifest.format_version}, this version reads "
                           f"{FORMAT_VERSION}; rebuild the gallery")
    settings = IndexSettings.from_dict(manifest.index, str(manifest_path))
    if files is not None:  # galleries saved before the digests were recorded have none
        for name in (INDEX_FILE, METADATA_FILE):
            if not (directory / name).is_file():
                raise GalleryError(f"{directory / name}: missing")
            if files.get(name) != file_digest(directory / name):
                raise GalleryError(f"{directory / name}: does not match its manifest (the files come from "
                                   f"different galleries or were changed); rebuild the gallery")
    try:
        index = faiss.read_index(str(directory / INDEX_FILE))
    except RuntimeError as error:
        raise GalleryError(f"{directory / INDEX_FILE}: truncated or corrupt index file "
                           f"({str(error).splitlines()[0][:200]})") from None
    try:
        text = (directory / METADATA_FILE).read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise GalleryError(f"{directory / METADATA_FILE}: missing or unreadable metadata ({error})") from None
    table = MetadataTable.from_jsonl(text, str(directory / METADATA_FILE))
    if index.ntotal != total_rows or len(table) != total_rows:
        raise GalleryError(f"{directory}: index holds {index.ntotal} vectors and metadata {len(table)} rows, "
                           f"the manifest says {total_rows}; the gallery is incomplete, rebuild it")
    if index.d != manifest.embedding_size:
        raise GalleryError(f"{directory / INDEX_FILE}: vectors of size {index.d}, the manifest says "
                           f"{manifest.embedding_size}")
    return StoredGallery(manifest, settings, index, table)
