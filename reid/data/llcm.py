"""LLCM (low-light cross-modality; images; 9 dual RGB/IR cameras)."""
from __future__ import annotations

import os
import random

from reid.data.base import ReIDDataset, camera_from_path, read_id_list, read_path_labels, scan_identity_folders
from reid.data.samples import Direction, EvalSplit, Modality, Sample, relabel

VIS_CAMERAS = (1, 2, 3, 4, 5, 6, 7, 8, 9)
IR_CAMERAS = (1, 2, 4, 5, 6, 7, 8, 9)  # there is no test_nir/cam3


class LLCM(ReIDDataset):
    """LLCM: ``idx/train_{vis,nir}.txt`` for training, ``test_{vis,nir}/cam{c}/{pid:04d}/`` for testing.

    ir2vis: query = every test_nir image, gallery = one random visible image per (identity, camera);
    vis2ir: the reverse. Trial t draws its gallery with Python's ``random.Random(t)`` over identities (sorted),
    cameras (in order) and each folder's sorted file list, as the reference code does with seeds 0..9.
    """

    name = "llcm"
    protocol = "llcm"
    samples_gallery = True

    def _parse(self, problems: list[str]) -> None:
        training = []
        for relative, modality in (("idx/train_vis.txt", "vis"), ("idx/train_nir.txt", "ir")):
            for path, label in read_path_labels(self.root, relative, problems):
                training.append(Sample(path, label, camera_from_path(os.path.relpath(path, self.root)), modality))
        self._train = relabel(training)
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
