"""Gallery directories on disk: ``index.faiss``, ``metadata.jsonl`` and ``manifest.json``, written atomically.

A save writes a staging directory (its name unique to the process) and swaps it in, so a crash never replaces
a good gallery with a broken one. The manifest records what the gallery is (backbone, checkpoint digest,
embedding size, normalisation, index settings, item count) and the sha256 of the two data files written with
it, so a manifest copied from another gallery is refused on load.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import faiss

from reid.index.factory import GalleryError, IndexSettings
from reid.index.metadata import MetadataTable

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


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_gallery(directory: str | Path, manifest: Manifest, index: faiss.Index, table: MetadataTable) -> Path:
    """Write a gallery to ``directory``, which always holds a complete gallery (the old one until the new one is
    whole)."""
    directory = Path(directory)
    backup = directory.with_name(f".{directory.name}.old-{os.getpid()}")
    staging = None
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}.saving-"))
        os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes 0700; a gallery is shared like any folder
        faiss.write_index(index, str(staging / INDEX_FILE))
        (staging / METADATA_FILE).write_text(table.to_jsonl())
        manifest.items = table.live_count
        record = asdict(manifest) | {"total_rows": len(table), "files": {
            name: _sha256(staging / name) for name in (INDEX_FILE, METADATA_FILE)}}
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


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


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
            if files.get(name) != _sha256(directory / name):
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
