"""SYSU-MM01 (images; RGB cameras 1, 2, 4, 5; IR cameras 3, 6)."""
from __future__ import annotations

import random
from pathlib import Path

from reid.data.base import ReIDDataset, read_id_list, scan_identity_folders
from reid.data.protocols import SYSU
from reid.data.samples import Direction, EvalSplit, Sample
from reid.data.synthetic import World, save_image

RGB_CAMERAS = (1, 2, 4, 5)
INDOOR_RGB_CAMERAS = (1, 2)
IR_CAMERAS = (3, 6)


class SYSUMM01(ReIDDataset):
    """SYSU-MM01: ``cam{1..6}/{pid:04d}/{img:04d}.jpg`` and ``exp/{train,val,test}_id.txt``.

    Training identities are train_id + val_id. The official search is infrared -> visible only: query = every
    IR image (cameras 3 and 6) of the test identities, gallery = one random RGB image per (identity, camera),
    over cameras 1, 2, 4, 5 ("all" search) or 1, 2 ("indoor"), drawn with ``random.Random(trial)``.

    The search mode ("all" or "indoor") is the constructor's ``mode``.
    """

    name = "sysu"
    title = "SYSU-MM01"
    protocol = SYSU
    modes = ("all", "indoor")
    directions = ("ir2vis",)
    samples_gallery = True
    synthetic_ids = 50

    def _parse(self, problems: list[str]) -> None:
        train_ids = sorted(set(read_id_list(self.root, "exp/train_id.txt", problems))
                           | set(read_id_list(self.root, "exp/val_id.txt", problems)))
        self.test_ids = read_id_list(self.root, "exp/test_id.txt", problems)
        folders = {c: f"cam{c}" for c in RGB_CAMERAS + IR_CAMERAS}
        train_files = scan_identity_folders(self.root, folders, train_ids, problems, "cam1..cam6/")
        self._test_files = scan_identity_folders(self.root, folders, self.test_ids, problems, "cam1..cam6/")
        self._train = list(
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

    @classmethod
    def write_synthetic(cls, out: Path, num_ids: int, seed: int) -> None:
        world = World(seed, num_ids, 6)
        rng = world.rng
        for pid in range(1, num_ids + 1):
            cameras = [int(c) for c in rng.choice(RGB_CAMERAS, 2, replace=False)] + \
                list(IR_CAMERAS[:int(rng.integers(1, 3))])
            for camera in sorted(cameras):
                modality = "ir" if camera in IR_CAMERAS else "vis"
                for k in range(1, 5):
                    save_image(world.image(pid - 1, camera, modality),
                               out / f"cam{camera}" / f"{pid:04d}" / f"{k:04d}.jpg", modality)
        ids = list(range(1, num_ids + 1))
        num_test, num_val = max(2, round(num_ids * 0.4)), max(1, round(num_ids * 0.1))
        (out / "exp").mkdir(parents=True, exist_ok=True)
        (out / "exp/test_id.txt").write_text(",".join(map(str, ids[-num_test:])))
        (out / "exp/val_id.txt").write_text(",".join(map(str, ids[-num_test - num_val:-num_test])))
        (out / "exp/train_id.txt").write_text(",".join(map(str, ids[:-num_test - num_val])))
