"""A gallery's metadata as columns: one entry per FAISS row, filtered with vectorised numpy operations.

Row ``i`` describes FAISS id ``i``. Removal is a tombstone in the ``removed`` column (searches skip the row;
``Gallery.compact`` drops it). On disk the table is JSON lines, one object per row:
``{"path": ..., "pid": ..., "camid": ..., "modality": ..., "label": ..., "removed": ...}``.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, TypeAdapter, ValidationError

from reid.index.settings import GalleryError, one_line

UNKNOWN = -1  # pid or camid not known (images added without labels)
FIELDS = ("path", "pid", "camid", "modality", "label", "removed")

Path_ = str | tuple[str, ...]  # an image, or the frames of a tracklet


def path_key(path: Path_ | list[str]) -> str:
    """What a gallery item is matched by: its absolute path (a tracklet's first frame), so a file added as a
    relative path is found by its absolute path and the other way round."""
    first = path[0] if isinstance(path, (list, tuple)) else path
    return os.path.abspath(first)


class MetadataRow(BaseModel):
    """One row as stored: a path (or a tracklet's frames), identity, camera, modality, a free label, a tombstone."""

    model_config = ConfigDict(extra="forbid")

    path: StrictStr | Annotated[list[StrictStr], Field(min_length=1)]
    pid: StrictInt | None = None
    camid: StrictInt | None = None
    modality: Literal["vis", "ir"] | None = None
    label: StrictStr | None = None
    removed: StrictBool = False


_ROW = TypeAdapter(MetadataRow)


@dataclass
class MetadataTable:
    """Columns of per-item metadata.

    Attributes:
        paths: Image path, or the frame paths of a tracklet.
        pids: Identity, or -1 when unknown.
        camids: Camera, or -1 when unknown.
        modalities: "vis", "ir", or "" when unknown.
        labels: A free label per item, or None.
        removed: Tombstones.
    """

    paths: list[Path_] = field(default_factory=list)
    pids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    camids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    modalities: np.ndarray = field(default_factory=lambda: np.zeros(0, "<U3"))
    labels: list[str | None] = field(default_factory=list)
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
        return cls([tuple(r.path) if isinstance(r.path, list) else r.path for r in valid],
                   np.array([UNKNOWN if r.pid is None else r.pid for r in valid], np.int64),
                   np.array([UNKNOWN if r.camid is None else r.camid for r in valid], np.int64),
                   np.array([r.modality or "" for r in valid], "<U3"), [r.label for r in valid],
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
        return {"path": list(path) if isinstance(path, tuple) else path,
                "pid": None if self.pids[index] == UNKNOWN else int(self.pids[index]),
                "camid": None if self.camids[index] == UNKNOWN else int(self.camids[index]),
                "modality": str(self.modalities[index]) or None, "label": self.labels[index],
                "removed": bool(self.removed[index])}

    def rows(self) -> Iterator[dict[str, Any]]:
        return (self.row(i) for i in range(len(self)))

    def extend(self, other: MetadataTable) -> None:
        self.paths += other.paths
        self.labels += other.labels
        self.pids = np.concatenate([self.pids, other.pids])
        self.camids = np.concatenate([self.camids, other.camids])
        self.modalities = np.concatenate([self.modalities, other.modalities])
        self.removed = np.concatenate([self.removed, other.removed])

    def select(self, rows: np.ndarray) -> MetadataTable:
        """A new table of the given row numbers (in that order)."""
        return MetadataTable([self.paths[i] for i in rows], self.pids[rows], self.camids[rows],
                             self.modalities[rows], [self.labels[i] for i in rows], self.removed[rows].copy())

    def live_rows_with_paths(self, paths: Iterable[Path_ | list[str]]) -> np.ndarray:
        """Row numbers of live items whose path (a tracklet: first frame) is one of ``paths``."""
        wanted = {path_key(p) for p in paths}
        keys = np.array([path_key(p) in wanted for p in self.paths], bool)
        return np.flatnonzero(keys & ~self.removed)

    def allowed(self, modality: str | None = None, exclude_camid: int | None = None,
                camids: Sequence[int] | None = None) -> np.ndarray:
        """Boolean mask of the live rows that pass the filters.

        Args:
            modality: Only this modality.
            exclude_camid: Not this camera (items of unknown camera pass).
            camids: Only these cameras.
        """
        mask = ~self.removed
        if modality is not None:
            mask &= self.modalities == modality
        if exclude_camid is not None:
            mask &= self.camids != exclude_camid
        if camids is not None:
            mask &= np.isin(self.camids, np.asarray(list(camids), np.int64))
        return mask
