"""A gallery's metadata as columns: one entry per FAISS row, filtered with vectorised numpy operations.

Row ``i`` describes FAISS id ``i``. Every item also has an ``id`` of its own, given when it is added and never
given again: rows are renumbered when ``Gallery.compact`` drops removed ones, ids are not, so an id a client holds
names the same item until that item is removed. Removal is a tombstone in the ``removed`` column (searches skip the
row; ``Gallery.compact`` drops it). On disk the table is JSON lines, one object per row:
``{"id": ..., "path": ..., "pid": ..., "camid": ..., "modality": ..., "label": ..., "timestamp": ..., "removed":
...}`` (galleries saved before ids were kept have none: their ids are their row numbers; ``timestamp``, seconds
since 1970 UTC, is there for items added with one).
"""
from __future__ import annotations

import json
import os
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, TypeAdapter, ValidationError

from reid.data.samples import UNKNOWN  # pid or camid not known (images added without labels)
from reid.index.settings import GalleryError, one_line

FIELDS = ("id", "path", "pid", "camid", "modality", "label", "timestamp", "removed")

Path_ = str | tuple[str, ...]  # an image, or the frames of a tracklet


def path_key(path: Path_ | list[str]) -> str:
    """What a gallery item is matched by: its absolute path (a tracklet's first frame), so a file added as a
    relative path is found by its absolute path and the other way round."""
    first = path[0] if isinstance(path, (list, tuple)) else path
    return os.path.abspath(first)


class MetadataRow(BaseModel):
    """One row as stored: a path (or a tracklet's frames), identity, camera, modality, a free label, a tombstone."""

    model_config = ConfigDict(extra="forbid")

    id: Annotated[StrictInt, Field(ge=0, lt=2 ** 63)] | None = None
    path: StrictStr | Annotated[list[StrictStr], Field(min_length=1)]
    pid: Annotated[StrictInt, Field(ge=-2 ** 63, lt=2 ** 63)] | None = None
    camid: Annotated[StrictInt, Field(ge=-2 ** 63, lt=2 ** 63)] | None = None
    modality: Literal["vis", "ir"] | None = None
    label: StrictStr | None = None
    timestamp: Annotated[StrictInt, Field(ge=0, lt=2 ** 63)] | None = None
    removed: StrictBool = False


_ROW = TypeAdapter(MetadataRow)


@dataclass
class MetadataTable:
    """Columns of per-item metadata.

    Attributes:
        ids: The items' own ids (given on add, never again), or -1 where the rows were made without (``ids_from``
            gives them).
        paths: Image path, or the frame paths of a tracklet.
        pids: Identity, or -1 when unknown.
        camids: Camera, or -1 when unknown.
        modalities: "vis", "ir", or "" when unknown.
        labels: A free label per item, or None.
        timestamps: When each item was seen, in seconds since 1970 UTC, or -1 when it was not said.
        removed: Tombstones.
    """

    ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    paths: list[Path_] = field(default_factory=list)
    pids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    camids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    modalities: np.ndarray = field(default_factory=lambda: np.zeros(0, "<U3"))
    labels: list[str | None] = field(default_factory=list)
    timestamps: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    removed: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))

    @classmethod
    def from_rows(cls, rows: Sequence[dict[str, Any] | MetadataRow], source: str = "metadata") -> MetadataTable:
        """A table from row dicts (path required; pid, camid, modality, label, removed optional); a row of the
        wrong shape is a GalleryError naming it."""
        valid = []
        for number, row in enumerate(rows, 1):
            try:
                valid.append(row if isinstance(row, MetadataRow) else _ROW.validate_python(row))
            except ValidationError as error:
                raise GalleryError(f"{source}:{number}: {one_line(error)}") from None
        return cls(np.array([-1 if r.id is None else r.id for r in valid], np.int64),
                   [tuple(r.path) if isinstance(r.path, list) else r.path for r in valid],
                   np.array([UNKNOWN if r.pid is None else r.pid for r in valid], np.int64),
                   np.array([UNKNOWN if r.camid is None else r.camid for r in valid], np.int64),
                   np.array([r.modality or "" for r in valid], "<U3"), [r.label for r in valid],
                   np.array([UNKNOWN if r.timestamp is None else r.timestamp for r in valid], np.int64),
                   np.array([r.removed for r in valid], bool))

    @classmethod
    def from_jsonl(cls, text: str, source: str) -> MetadataTable:
        rows = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                rows.append(_ROW.validate_json(line))
            except ValidationError as error:
                raise GalleryError(f"{source}:{number}: {one_line(error)}") from None
        return cls.from_rows(rows, source)

    def to_jsonl(self) -> str:
        return "".join(json.dumps(row) + "\n" for row in self.rows())

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def live_count(self) -> int:
        return int(len(self) - self.removed.sum())

    def row(self, index: int) -> dict[str, Any]:
        """Row ``index`` as a dict (unknown values as None)."""
        path = self.paths[index]
        return {"id": int(self.ids[index]) if self.ids[index] >= 0 else None,
                "path": list(path) if isinstance(path, tuple) else path,
                "pid": None if self.pids[index] == UNKNOWN else int(self.pids[index]),
                "camid": None if self.camids[index] == UNKNOWN else int(self.camids[index]),
                "modality": str(self.modalities[index]) or None, "label": self.labels[index],
                "timestamp": None if self.timestamps[index] == UNKNOWN else int(self.timestamps[index]),
                "removed": bool(self.removed[index])}

    def rows(self) -> Iterator[dict[str, Any]]:
        return (self.row(i) for i in range(len(self)))

    def ids_from(self, first: int) -> int:
        """Give the rows without an id the ids ``first``, ``first + 1``, ...; returns the next id to give."""
        missing = np.flatnonzero(self.ids < 0)
        self.ids[missing] = np.arange(first, first + len(missing))
        return first + len(missing)

    def rows_of(self, ids: Iterable[int]) -> dict[int, int]:
        """Row numbers of the items with these ids (an id the table does not hold is left out)."""
        wanted = np.asarray(list(ids), np.int64)
        rows = np.flatnonzero(np.isin(self.ids, wanted))
        return {int(self.ids[row]): int(row) for row in rows}

    def extend(self, other: MetadataTable) -> None:
        self.ids = np.concatenate([self.ids, other.ids])
        self.paths += other.paths
        self.labels += other.labels
        self.pids = np.concatenate([self.pids, other.pids])
        self.camids = np.concatenate([self.camids, other.camids])
        self.modalities = np.concatenate([self.modalities, other.modalities])
        self.timestamps = np.concatenate([self.timestamps, other.timestamps])
        self.removed = np.concatenate([self.removed, other.removed])

    def select(self, rows: np.ndarray) -> MetadataTable:
        """A new table of the given row numbers (in that order)."""
        return MetadataTable(self.ids[rows], [self.paths[i] for i in rows], self.pids[rows], self.camids[rows],
                             self.modalities[rows], [self.labels[i] for i in rows], self.timestamps[rows],
                             self.removed[rows].copy())

    def live_rows_with_paths(self, paths: Iterable[Path_ | list[str]]) -> np.ndarray:
        """Row numbers of live items whose path (a tracklet: first frame) is one of ``paths``."""
        wanted = {path_key(p) for p in paths}
        keys = np.array([path_key(p) in wanted for p in self.paths], bool)
        return np.flatnonzero(keys & ~self.removed)

    def allowed(self, modality: str | None = None, exclude_camids: Collection[int] | None = None,
                camids: Collection[int] | None = None, since: int | None = None,
                until: int | None = None, pid: int | None = None) -> np.ndarray:
        """Boolean mask of the live rows that pass the filters. The rule for items of unknown camera, the same in
        the command line, the library, the service and the Milvus backend: they are known to be from no camera,
        so "only these cameras" leaves them out and "not these cameras" keeps them; likewise an item without a
        timestamp is in no time range.

        Args:
            modality: Only this modality.
            exclude_camids: Not the items known to be from these cameras.
            camids: Only the items known to be from these cameras.
            since: Only items seen at or after this time (seconds since 1970 UTC).
            until: Only items seen at or before this time.
            pid: Only the items of this identity.
        """
        mask = ~self.removed
        if pid is not None:
            mask &= self.pids == pid
        if modality is not None:
            mask &= self.modalities == modality
        if exclude_camids:
            mask &= ~np.isin(self.camids, np.asarray(sorted(exclude_camids), np.int64))
        if camids is not None:
            mask &= np.isin(self.camids, np.asarray(sorted(camids), np.int64)) & (self.camids != UNKNOWN)
        if since is not None or until is not None:
            mask &= (self.timestamps != UNKNOWN) & (self.timestamps >= (since if since is not None else 0))
        if until is not None:
            mask &= self.timestamps <= until
        return mask
