"""What every dataset reader offers, and the parsing helpers they share."""
from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import ClassVar

from reid.data.errors import DatasetError
from reid.data.images import image_problems
from reid.data.protocols import Protocol
from reid.data.samples import DIRECTIONS, Direction, EvalSplit, Sample, statistics
from reid.io import directory, regular_file

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


class ReIDDataset:
    """A dataset root parsed into plain lists of samples; the class says everything else about the dataset.

    Subclasses parse in ``_parse`` and append every problem they find (missing or malformed index files,
    missing images, empty identities) to the list they are given; the constructor raises ``DatasetError``
    listing all of them, so a user fixes a root in one go. ``write_synthetic`` writes a small rendered copy of
    the layout (for tests and the demo). A new dataset is a subclass plus one line in ``reid.data.registry``.

    Args:
        root: Dataset root, as the authors distribute it.
        strict: Raise on any problem (default); otherwise keep them in ``problems`` and offer the usable part
            (for ``reid data check``).
        mode: Search mode, one of ``modes`` (SYSU-MM01: "all" or "indoor"); default the first.
    """

    name: ClassVar[str]
    title: ClassVar[str]  # as the authors write it
    protocol: ClassVar[Protocol]
    modes: ClassVar[tuple[str, ...]] = ("all",)
    directions: ClassVar[tuple[Direction, ...]] = DIRECTIONS
    num_trials: ClassVar[int] = 10
    trains_per_trial: ClassVar[bool] = False  # RegDB: one training split per trial
    samples_gallery: ClassVar[bool] = False  # LLCM, SYSU-MM01: a random gallery per trial
    tracklets: ClassVar[bool] = False  # samples are tracklets of frames (VCM-HITSZ), not single images
    synthetic_ids: ClassVar[int]  # identities of the synthetic copy: trains in minutes on two CPU cores

    def __init__(self, root: str | Path, strict: bool = True, mode: str | None = None) -> None:
        self.root = Path(root)
        self.mode = mode or self.modes[0]
        if self.mode not in self.modes:
            raise DatasetError(self.root, [f"{self.title} has no search mode {self.mode!r}; use "
                                           f"{' or '.join(self.modes)}"])
        if not directory(self.root):
            raise DatasetError(self.root, [f"{self.root}: no such directory"])
        self.problems: list[str] = []
        self._parse(self.problems)
        if self.problems and strict:
            raise DatasetError(self.root, self.problems)

    def verify_images(self, progress: Callable[[int, int], None] | None = None) -> None:
        """Decode every image (at reduced scale) and raise DatasetError naming each unreadable one.

        Args:
            progress: Called as progress(images checked, total).
        """
        files = list(self.all_files())
        done = 0

        def advance(count: int) -> None:
            nonlocal done
            done += count
            if progress:
                progress(done, len(files))

        problems = image_problems(files, advance)
        if problems:
            raise DatasetError(self.root, problems)

    def _parse(self, problems: list[str]) -> None:
        raise NotImplementedError

    @classmethod
    def write_synthetic(cls, out: Path, num_ids: int, seed: int) -> None:
        """Write ``num_ids`` rendered identities (``reid.data.synthetic``) to ``out`` in this dataset's layout."""
        raise NotImplementedError

    def train(self, trial: int = 0) -> list[Sample]:
        """Training samples of both modalities, with the dataset's own identity numbers (the trainer maps them to
        0..N-1 for its classifier, ``reid.data.samples.relabel``)."""
        raise NotImplementedError

    def test_split(self, direction: Direction = "ir2vis", trial: int = 0) -> EvalSplit:
        """Query and gallery for a search direction and trial, as the official protocol builds them."""
        raise NotImplementedError

    def check_direction_and_trial(self, direction: str, trial: int) -> None:
        if direction not in self.directions:
            choices = ", ".join(self.directions)
            raise DatasetError(self.root, [f"{self.name} has no {direction!r} search; use {choices}"])
        if not 0 <= trial < self.num_trials:
            raise DatasetError(self.root, [f"{self.name} has trials 0..{self.num_trials - 1}, got {trial}"])

    def all_files(self) -> Iterator[str]:
        """Every image (or frame) the dataset refers to, for integrity checks."""
        seen: set[str] = set()
        lists = [self.train(t) for t in range(self.num_trials if self.trains_per_trial else 1)]
        for direction in self.directions:
            split = self.test_split(direction, 0)
            lists += [split.query, split.gallery]
            if self.samples_gallery:
                lists += [self.test_split(direction, t).gallery for t in range(1, self.num_trials)]
        for samples in lists:
            for sample in samples:
                for frame in sample.frames:
                    if frame not in seen:
                        seen.add(frame)
                        yield frame

    def statistics(self, direction: Direction | None = None, trial: int = 0) -> dict:
        """Counts per split and modality (query/gallery of the default direction and trial 0)."""
        split = self.test_split(direction or self.directions[0], trial)
        return {"dataset": self.name, "train": statistics(self.train(trial)),
                "query": statistics(split.query), "gallery": statistics(split.gallery)}


def read_index_lines(root: Path, relative: str, problems: list[str]) -> list[tuple[int, str]] | None:
    """(line number, text) of the non-empty lines of an index file, or None (with a problem) when it is missing."""
    path = root / relative
    if not regular_file(path):
        problems.append(f"{path}: {'not a regular file' if os.path.lexists(path) else 'missing index file'}")
        return None
    with open(path, encoding="utf-8", errors="replace") as handle:
        return [(number, line.strip()) for number, line in enumerate(handle, 1) if line.strip()]


def read_path_labels(root: Path, relative: str, problems: list[str]) -> list[tuple[str, int]]:
    """Lines of "relative/path label" as (absolute path, label); malformed lines and missing images are problems."""
    lines = read_index_lines(root, relative, problems)
    entries = []
    first_line: dict[str, int] = {}
    for number, line in lines or []:
        where = f"{root / relative}:{number}"
        parts = line.split()
        if len(parts) != 2 or not re.fullmatch(r"-?\d+", parts[1]):
            problems.append(f"{where}: expected 'relative/path label', got {line!r}")
            continue
        normal = os.path.normpath(parts[0])
        if os.path.isabs(normal) or normal == ".." or normal.startswith(".." + os.sep):
            problems.append(f"{where}: {parts[0]} is outside the dataset root (paths are relative to {root})")
            continue
        if normal in first_line:
            problems.append(f"{where}: {parts[0]} is listed again (first on line {first_line[normal]})")
            continue
        first_line[normal] = number
        path = root / normal
        if not regular_file(path):
            problems.append(f"{where}: {'not a regular file' if _exists(path) else 'missing image'} {path}")
            continue
        entries.append((str(path), int(parts[1])))
    if lines is not None and not lines:
        problems.append(f"{root / relative}: empty index file")
    return entries


def read_id_list(root: Path, relative: str, problems: list[str]) -> list[int]:
    """Identity numbers from a file of comma- (or whitespace-) separated integers."""
    lines = read_index_lines(root, relative, problems)
    if lines is None:
        return []
    ids = []
    for number, line in lines:
        for token in re.split(r"[,\s]+", line):
            if not token:
                continue
            if not token.isdigit():
                problems.append(f"{root / relative}:{number}: {token!r} is not an identity number")
                continue
            ids.append(int(token))
    if not ids:
        problems.append(f"{root / relative}: lists no identities")
    return sorted(set(ids))


def list_images(folder: Path) -> list[str] | None:
    """Sorted image paths in a folder, or None when the folder does not exist."""
    try:
        entries = os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return [str(folder / name) for name in sorted(entries) if name.lower().endswith(IMAGE_SUFFIXES)]


def _exists(path: Path) -> bool:
    try:
        return os.path.lexists(path)
    except (OSError, ValueError):
        return False


def camera_from_path(path: str) -> int:
    """The camera number after "cam" in a path (0 when the path names none)."""
    match = re.search(r"cam(\d+)", path)
    return int(match.group(1)) if match else 0


def scan_identity_folders(
        root: Path,
        folders: dict[int, str],
        ids: list[int],
        problems: list[str],
        where: str,
) -> dict[tuple[int, int], list[str]]:
    """Sorted images of each (pid, camera) from folders like "{folder}/{pid:04d}", for the given ids.

    An identity folder that exists but holds no image, and an identity with no image under any camera, are
    problems.
    """
    files: dict[tuple[int, int], list[str]] = {}
    for pid in ids:
        found = False
        for camera, folder in folders.items():
            images = list_images(root / folder / f"{pid:04d}")
            if images is None:
                continue
            if not images:
                problems.append(f"{root / folder / f'{pid:04d}'}: empty identity folder")
                continue
            files[(pid, camera)] = images
            found = True
        if not found:
            problems.append(f"identity {pid:04d} has no images under {where}")
    return files
