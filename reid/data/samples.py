"""Samples: what every reader returns and everything downstream consumes."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import Enum
from typing import Literal

Modality = Literal["vis", "ir"]
MODALITIES: tuple[Modality, ...] = ("vis", "ir")
Direction = Literal["ir2vis", "vis2ir"]
DIRECTIONS: tuple[Direction, ...] = ("ir2vis", "vis2ir")
UNKNOWN = -1  # a pid or camera that is not known (an unlabelled image, a folder dataset's unnamed camera)


class Split(str, Enum):
    """A part of a dataset: the training samples, or the query or gallery of a search, or all of them."""

    gallery = "gallery"
    query = "query"
    train = "train"
    all = "all"


@dataclass(frozen=True)
class Sample:
    """One image, or one tracklet of frames, with its labels.

    Attributes:
        path: Image path, or the tuple of frame paths of a tracklet (in temporal order).
        pid: Identity, the dataset's own number (-1 when unknown).
        camid: Camera number as the dataset names it (-1 when unknown: no camera is known to be the same).
        modality: "vis" (visible) or "ir" (infrared / thermal).
    """

    path: str | tuple[str, ...]
    pid: int
    camid: int
    modality: Modality

    @property
    def frames(self) -> tuple[str, ...]:
        return self.path if isinstance(self.path, tuple) else (self.path,)

    @property
    def shown_frame(self) -> str:
        """The frame that shows the sample in pictures: the image, or a tracklet's middle frame."""
        return self.frames[len(self.frames) // 2]

    @property
    def is_tracklet(self) -> bool:
        return isinstance(self.path, tuple)


@dataclass(frozen=True)
class EvalSplit:
    """Query and gallery of one search direction and trial."""

    query: list[Sample]
    gallery: list[Sample]
    direction: Direction
    trial: int


def relabel(samples: Iterable[Sample]) -> list[Sample]:
    """Map pids (shared by both modalities) to 0..N-1 in sorted order: the classifier's labels."""
    samples = list(samples)
    labels = {pid: label for label, pid in enumerate(sorted({s.pid for s in samples}))}
    return [replace(s, pid=labels[s.pid]) for s in samples]


def statistics(samples: Iterable[Sample]) -> dict[str, dict[str, int]]:
    """Per modality: identities, images (or tracklets and frames) and cameras."""
    out: dict[str, dict[str, int]] = {}
    groups: dict[str, list[Sample]] = {}
    for sample in samples:
        groups.setdefault(sample.modality, []).append(sample)
    for modality in MODALITIES:
        if modality not in groups:
            continue
        group = groups[modality]
        entry = {"ids": len({s.pid for s in group})}
        if group[0].is_tracklet:
            entry["tracklets"] = len(group)
            entry["frames"] = sum(len(s.frames) for s in group)
        else:
            entry["images"] = len(group)
        entry["cameras"] = len({s.camid for s in group})
        out[modality] = entry
    return out
