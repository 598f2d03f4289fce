"""RegDB (images; one visible and one thermal camera; 10 random train/test splits)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from reid.data.base import ReIDDataset, read_path_labels
from reid.data.protocols import REGDB
from reid.data.samples import Direction, EvalSplit, Sample
from reid.data.synthetic import World, save_image

VIS_CAMERA, IR_CAMERA = 1, 2


class RegDB(ReIDDataset):
    """RegDB: ``idx/{train,test}_{visible,thermal}_{t}.txt`` (t = 1..10) with paths relative to the root.

    Trial i (0..9) is split t = i + 1, with its own training set. ir2vis: query = the split's thermal test
    images, gallery = its visible test images; vis2ir the reverse. Nothing is removed from the gallery.
    """

    name = "regdb"
    title = "RegDB"
    protocol = REGDB
    trains_per_trial = True
    synthetic_ids = 40

    def _parse(self, problems: list[str]) -> None:
        self._splits: dict[tuple[str, str, int], list[Sample]] = {}
        for split in ("train", "test"):
            for modality, word, camera in (("vis", "visible", VIS_CAMERA), ("ir", "thermal", IR_CAMERA)):
                for t in range(1, self.num_trials + 1):
                    entries = read_path_labels(self.root, f"idx/{split}_{word}_{t}.txt", problems)
                    self._splits[(split, modality, t)] = [Sample(p, label, camera, modality) for p, label in entries]

    def train(self, trial: int = 0) -> list[Sample]:
        self.check_direction_and_trial(self.directions[0], trial)
        return self._splits[("train", "vis", trial + 1)] + self._splits[("train", "ir", trial + 1)]

    def test_split(self, direction: Direction = "ir2vis", trial: int = 0) -> EvalSplit:
        self.check_direction_and_trial(direction, trial)
        query_modality, gallery_modality = ("ir", "vis") if direction == "ir2vis" else ("vis", "ir")
        return EvalSplit(list(self._splits[("test", query_modality, trial + 1)]),
                         list(self._splits[("test", gallery_modality, trial + 1)]), direction, trial)

    @classmethod
    def write_synthetic(cls, out: Path, num_ids: int, seed: int) -> None:
        world = World(seed, num_ids, 2)
        files: dict[tuple[int, str], list[str]] = {}
        for pid in range(1, num_ids + 1):
            for modality, folder, camera in (("vis", "Visible", VIS_CAMERA), ("ir", "Thermal", IR_CAMERA)):
                for k in range(5):
                    relative = f"{folder}/{pid}/{folder[0].lower()}_{pid:04d}_{k}.bmp"
                    save_image(world.image(pid - 1, camera, modality), out / relative, modality)
                    files.setdefault((pid, modality), []).append(relative)
        (out / "idx").mkdir(parents=True, exist_ok=True)
        for t in range(1, cls.num_trials + 1):
            ids = list(np.random.default_rng(seed + t).permutation(np.arange(1, num_ids + 1)))
            half = len(ids) // 2
            for split, chosen in (("train", sorted(ids[:half])), ("test", sorted(ids[half:]))):
                for modality, word in (("vis", "visible"), ("ir", "thermal")):
                    lines = [f"{path} {pid}" for pid in chosen for path in files[(int(pid), modality)]]
                    (out / f"idx/{split}_{word}_{t}.txt").write_text("\n".join(lines) + "\n")
