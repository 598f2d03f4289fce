"""Your own data without writing a reader: a CSV of labelled images, or a folder tree of them.

Two layouts under one root (the CSV wins when both are there)::

    ROOT/samples.csv          path,identity,camera,modality[,split]   (one image per row, paths relative to ROOT)
    ROOT/{vis,ir}/{identity}/*.jpg                                     (camera from a "c3" / "cam3" in the name)

``modality`` is vis or ir (visible, rgb; infrared, nir, thermal are read as such); ``camera`` is a positive number
or empty when unknown. ``split`` (train, query, gallery) says which part each image is in; without it the last
40% of the identities (sorted, at least two) are held out for testing, all of their images on both sides of the
search. Searches go both ways: ir2vis (infrared queries, visible gallery) and vis2ir. A gallery item of the
query's identity seen by the query's own camera is not counted (as LLCM and VCM-HITSZ do), when the camera is
known.
"""
from __future__ import annotations

import csv
import os
import re
from pathlib import Path

from reid.data.base import IMAGE_SUFFIXES, ReIDDataset
from reid.data.protocols import CUSTOM
from reid.data.samples import UNKNOWN, Direction, EvalSplit, Modality, Sample
from reid.data.synthetic import World, save_image, split_ids
from reid.io import directory, regular_file

COLUMNS = ("path", "identity", "camera", "modality")
SPLITS = ("train", "query", "gallery")
MODALITY_NAMES: dict[str, Modality] = {"vis": "vis", "visible": "vis", "rgb": "vis", "ir": "ir", "infrared": "ir",
                                       "nir": "ir", "thermal": "ir"}
TEST_FRACTION = 0.4


def camera_in(name: str) -> int:
    """The camera a file name gives as "c3" or "cam3" (not inside a word), or UNKNOWN (-1) when it names none."""
    match = re.search(r"(?:^|[^a-z])c(?:am)?(\d+)", name.lower())
    return int(match.group(1)) if match else UNKNOWN


class Folder(ReIDDataset):
    """A root of your own labelled images (``samples.csv``, or ``vis/`` and ``ir/`` identity folders)."""

    name = "folder"
    title = "your own folder"
    protocol = CUSTOM
    num_trials = 1
    synthetic_ids = 40

    def _parse(self, problems: list[str]) -> None:
        index = self.root / "samples.csv"
        rows = self._read_csv(index, problems) if regular_file(index) else self._scan_folders(problems)
        if not rows and not problems:
            problems.append(f"{self.root}: no samples.csv and no images under vis/ or ir/ identity folders")
        labelled = [(split, sample) for split, sample in rows if split]
        if labelled and len(labelled) < len(rows):
            problems.append(f"{index}: give a split for every row or for none")
        if labelled:
            self._parts = {part: [s for split, s in rows if split == part] for part in SPLITS}
        else:
            train_ids, test_ids = split_ids(len({s.pid for _, s in rows}), TEST_FRACTION) if rows else ([], [])
            ordered = sorted({s.pid for _, s in rows})
            held_out = {ordered[i - 1] for i in test_ids}
            test = [s for _, s in rows if s.pid in held_out]
            self._parts = {"train": [s for _, s in rows if s.pid not in held_out], "query": test, "gallery": test}
        for part in SPLITS:
            if rows and not self._parts[part]:
                problems.append(f"{self.root}: the {part} split is empty")

    def _read_csv(self, index: Path, problems: list[str]) -> list[tuple[str | None, Sample]]:
        with open(index, newline="", encoding="utf-8", errors="replace") as handle:
            reader = csv.DictReader(handle)
            header = [name.strip() for name in reader.fieldnames or []]
            missing = [column for column in COLUMNS if column not in header]
            if missing:
                problems.append(f"{index}:1: the header needs {', '.join(COLUMNS)} (and optionally split); "
                                f"{', '.join(missing)} missing")
                return []
            rows, seen = [], {}
            for number, row in enumerate(reader, 2):
                row = {key.strip(): (value or "").strip() for key, value in row.items() if key is not None}
                where = f"{index}:{number}"
                sample = self._sample(row, where, problems)
                split = row.get("split") or None
                if split is not None and split not in SPLITS:
                    problems.append(f"{where}: split must be {', '.join(SPLITS)} or empty, got {split!r}")
                    continue
                if sample is None:
                    continue
                if sample.path in seen and split == seen[sample.path]:
                    problems.append(f"{where}: {row['path']} is listed again")
                    continue
                seen[sample.path] = split
                rows.append((split, sample))
        return rows

    def _sample(self, row: dict[str, str], where: str, problems: list[str]) -> Sample | None:
        relative = os.path.normpath(row["path"])
        if not row["path"] or os.path.isabs(relative) or relative == ".." or relative.startswith(".." + os.sep):
            problems.append(f"{where}: {row['path']!r} is not a path inside the dataset root")
            return None
        if not row["identity"].lstrip("-").isdigit():
            problems.append(f"{where}: identity must be a number, got {row['identity']!r}")
            return None
        if row["camera"] and not row["camera"].isdigit():
            problems.append(f"{where}: camera must be a number or empty, got {row['camera']!r}")
            return None
        modality = MODALITY_NAMES.get(row["modality"].lower())
        if modality is None:
            problems.append(f"{where}: modality must be vis or ir, got {row['modality']!r}")
            return None
        path = self.root / relative
        if not regular_file(path):
            problems.append(f"{where}: missing image {path}")
            return None
        return Sample(str(path), int(row["identity"]), int(row["camera"]) if row["camera"] else UNKNOWN, modality)

    def _scan_folders(self, problems: list[str]) -> list[tuple[None, Sample]]:
        rows = []
        for modality in ("vis", "ir"):
            folder = self.root / modality
            if not directory(folder):
                continue
            for identity in sorted(os.listdir(folder)):
                if not directory(folder / identity):
                    continue
                if not identity.isdigit():
                    problems.append(f"{folder / identity}: identity folders are numbers")
                    continue
                for path in sorted((folder / identity).rglob("*")):
                    if path.suffix.lower() in IMAGE_SUFFIXES and regular_file(path):
                        rows.append((None, Sample(str(path), int(identity),
                                                  camera_in(os.path.relpath(path, folder / identity)), modality)))
        return rows

    def train(self, trial: int = 0) -> list[Sample]:
        return list(self._parts["train"])

    def test_split(self, direction: Direction = "ir2vis", trial: int = 0) -> EvalSplit:
        self.check_direction_and_trial(direction, trial)
        query_modality, gallery_modality = ("ir", "vis") if direction == "ir2vis" else ("vis", "ir")
        return EvalSplit([s for s in self._parts["query"] if s.modality == query_modality],
                         [s for s in self._parts["gallery"] if s.modality == gallery_modality], direction, trial)

    @classmethod
    def write_synthetic(cls, out: Path, num_ids: int, seed: int) -> None:
        world = World(seed, num_ids, 4)
        rng = world.rng
        lines = [",".join(COLUMNS)]
        for pid in range(1, num_ids + 1):
            for modality in ("vis", "ir"):
                for camera in sorted(int(c) for c in rng.choice([1, 2, 3, 4], 2, replace=False)):
                    for k in range(2):
                        relative = f"images/{pid:04d}_{modality}_c{camera}_{k}.jpg"
                        save_image(world.image(pid - 1, camera, modality), out / relative, modality)
                        lines.append(f"{relative},{pid},{camera},{modality}")
        (out / "samples.csv").write_text("\n".join(lines) + "\n")
