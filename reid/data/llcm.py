"""LLCM (low-light cross-modality; images; 9 dual RGB/IR cameras)."""
from __future__ import annotations

import os
import random
from pathlib import Path

from reid.data.base import ReIDDataset, camera_from_path, read_id_list, read_path_labels, scan_identity_folders
from reid.data.protocols import LLCM as LLCM_PROTOCOL
from reid.data.samples import Direction, EvalSplit, Modality, Sample
from reid.data.synthetic import World, save_image, split_ids

VIS_CAMERAS = (1, 2, 3, 4, 5, 6, 7, 8, 9)
IR_CAMERAS = (1, 2, 4, 5, 6, 7, 8, 9)  # there is no test_nir/cam3


class LLCM(ReIDDataset):
    """LLCM: ``idx/train_{vis,nir}.txt`` for training, ``test_{vis,nir}/cam{c}/{pid:04d}/`` for testing.

    ir2vis: query = every test_nir image, gallery = one random visible image per (identity, camera);
    vis2ir: the reverse. Trial t draws its gallery with Python's ``random.Random(t)`` over identities (sorted),
    cameras (in order) and each folder's sorted file list, as the reference code does with seeds 0..9.
    """

    name = "llcm"
    title = "LLCM"
    protocol = LLCM_PROTOCOL
    samples_gallery = True
    synthetic_ids = 150

    def _parse(self, problems: list[str]) -> None:
        training = []
        for relative, modality in (("idx/train_vis.txt", "vis"), ("idx/train_nir.txt", "ir")):
            for path, label in read_path_labels(self.root, relative, problems):
                training.append(Sample(path, label, camera_from_path(os.path.relpath(path, self.root)), modality))
        self._train = training
        self.test_ids = read_id_list(self.root, "idx/test_id.txt", problems)
        self._test_files = {
            "vis": scan_identity_folders(self.root, {c: f"test_vis/cam{c}" for c in VIS_CAMERAS}, self.test_ids,
                                         problems, "test_vis/"),
            "ir": scan_identity_folders(self.root, {c: f"test_nir/cam{c}" for c in IR_CAMERAS}, self.test_ids,
                                        problems, "test_nir/"),
        }

    def train(self, trial: int = 0) -> list[Sample]:
        return list(self._train)

    def _images(self, modality: Modality) -> list[Sample]:
        cameras = VIS_CAMERAS if modality == "vis" else IR_CAMERAS
        files = self._test_files[modality]
        return [Sample(path, pid, camera, modality)
                for pid in self.test_ids for camera in cameras for path in files.get((pid, camera), ())]

    def _gallery(self, modality: Modality, trial: int) -> list[Sample]:
        rng = random.Random(trial)
        cameras = VIS_CAMERAS if modality == "vis" else IR_CAMERAS
        files = self._test_files[modality]
        return [Sample(rng.choice(files[(pid, camera)]), pid, camera, modality)
                for pid in self.test_ids for camera in cameras if (pid, camera) in files]

    def test_split(self, direction: Direction = "ir2vis", trial: int = 0) -> EvalSplit:
        self.check_direction_and_trial(direction, trial)
        query_modality, gallery_modality = ("ir", "vis") if direction == "ir2vis" else ("vis", "ir")
        return EvalSplit(self._images(query_modality), self._gallery(gallery_modality, trial), direction, trial)

    @classmethod
    def write_synthetic(cls, out: Path, num_ids: int, seed: int) -> None:
        world = World(seed, num_ids, 9)
        train_ids, test_ids = split_ids(num_ids)
        rng = world.rng
        lines = {"vis": [], "ir": []}
        for pid in train_ids:
            for modality, folder, cameras in (("vis", "train_vis", VIS_CAMERAS), ("ir", "train_nir", IR_CAMERAS)):
                for camera in rng.choice(list(cameras), 2, replace=False):
                    for k in range(2):
                        relative = f"{folder}/cam{camera}/{pid:04d}/{pid:04d}_c{camera:02d}_{k:03d}.jpg"
                        save_image(world.image(pid - 1, camera, modality), out / relative, modality)
                        lines[modality].append(f"{relative} {pid}")
        for pid in test_ids:
            for modality, folder, cameras in (("vis", "test_vis", VIS_CAMERAS), ("ir", "test_nir", IR_CAMERAS)):
                for camera in sorted(rng.choice(list(cameras), 3, replace=False)):
                    for k in range(2):
                        path = out / folder / f"cam{camera}" / f"{pid:04d}" / f"{pid:04d}_c{camera:02d}_{k:03d}.jpg"
                        save_image(world.image(pid - 1, camera, modality), path, modality)
        (out / "idx").mkdir(parents=True, exist_ok=True)
        (out / "idx/train_vis.txt").write_text("\n".join(lines["vis"]) + "\n")
        (out / "idx/train_nir.txt").write_text("\n".join(lines["ir"]) + "\n")
        (out / "idx/test_id.txt").write_text(",".join(str(pid) for pid in test_ids) + "\n")
