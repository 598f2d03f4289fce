"""SYSU-MM01 (images; RGB cameras 1, 2, 4, 5; IR cameras 3, 6)."""
from __future__ import annotations

import random
from pathlib import Path
from typing import Literal

from reid.data.base import ReIDDataset, read_id_list, scan_identity_folders
from reid.data.errors import DatasetError
from reid.data.samples import Direction, EvalSplit, Sample, relabel

RGB_CAMERAS = (1, 2, 4, 5)
INDOOR_RGB_CAMERAS = (1, 2)
IR_CAMERAS = (3, 6)


class SYSUMM01(ReIDDataset):
    """SYSU-MM01: ``cam{1..6}/{pid:04d}/{img:04d}.jpg`` and ``exp/{train,val,test}_id.txt``.

    Training identities are train_id + val_id. The official search is infrared -> visible only: query = every
    IR image (cameras 3 and 6) of the test identities, gallery = one random RGB image per (identity, camera),
    over cameras 1, 2, 4, 5 ("all" search) or 1, 2 ("indoor"), drawn with ``random.Random(trial)``.

    Args:
        root: Dataset root.
        mode: "all" or "indoor" search.
    """

    name = "sysu"
    protocol = "sysu"
    directions = ("ir2vis",)
    samples_gallery = True

    def __init__(self, root: str | Path, strict: bool = True, mode: Literal["all", "indoor"] = "all") -> None:
        if mode not in ("all", "indoor"):
            raise DatasetError(root, [f"SYSU-MM01 search mode must be 'all' or 'indoor', got {mode!r}"])
        self.mode = mode
        super().__init__(root, strict)

    def _parse(self, problems: list[str]) -> None:
        train_ids = sorted(set(read_id_list(self.root, "exp/train_id.txt", problems))
                           | set(read_id_list(self.root, "exp/val_id.txt", problems)))
        self.test_ids = read_id_list(self.root, "exp/test_id.txt", problems)
        folders = {c: f"cam{c}" for c in RGB_CAMERAS + IR_CAMERAS}
        train_files = scan_identity_folders(self.root, folders, train_ids, problems, "cam1..cam6/")
        self._test_files = scan_identity_folders(self.root, folders, self.test_ids, problems, "cam1..cam6/")
        self._train = relabel(
            Sample(path, pid, camera, "vis" if camera in RGB_CAMERAS else "ir")
            for pid in train_ids for camera in RGB_CAMERAS + IR_CAMERAS for path in train_files.get((pid, camera), ())
        )

    def train(self, trial: int = 0) -> list[Sample]:
        return list(self._train)

    def test_split(self, direction: Direction = "ir2vis", trial: int = 0) -> EvalSplit:
        self.check_direction_and_trial(direction, trial)
        files = self._test_files
        query = [Sample(path, pid, camera, "ir")
                 for pid in self.test_ids for camera in IR_CAMERAS for path in files.get((pid, camera), ())]
        rng = random.Random(trial)
        cameras = RGB_CAMERAS if self.mode == "all" else INDOOR_RGB_CAMERAS
        gallery = [Sample(rng.choice(files[(pid, camera)]), pid, camera, "vis")
                   for pid in self.test_ids for camera in cameras if (pid, camera) in files]
        return EvalSplit(query, gallery, direction, trial)
