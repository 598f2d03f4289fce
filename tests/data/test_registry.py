"""The registry is the one list of datasets: a reader added at run time is picked up by the config, the command
line, the synthetic layouts and the fuzz checks with no other edit."""
from pathlib import Path

import pytest
from checks import check_command_line, check_fuzzed_index_files, check_synthetic_layout, write_synthetic

from reid.config import ConfigError, make_config
from reid.data.base import ReIDDataset, read_index_lines
from reid.data.protocols import STANDARD
from reid.data.registry import DATASETS, READERS, dataset_class, dataset_help, register, unregister
from reid.data.samples import Direction, EvalSplit, Sample
from reid.data.synthetic import World, save_image, split_ids
from reid.errors import ReidError


class Market(ReIDDataset):
    """A throwaway layout: ``list.txt`` of "path pid camera modality split" lines."""

    name = "market"
    title = "Market-VI"
    protocol = STANDARD
    num_trials = 1
    synthetic_ids = 8

    def _parse(self, problems: list[str]) -> None:
        self._parts = {"train": [], "test": []}
        for number, line in read_index_lines(self.root, "list.txt", problems) or []:
            fields = line.split()
            if len(fields) != 5 or not fields[1].isdigit() or not fields[2].isdigit() \
                    or fields[3] not in ("vis", "ir") or fields[4] not in self._parts:
                problems.append(f"{self.root / 'list.txt'}:{number}: expected 'path pid camera modality split'")
                continue
            if not (self.root / fields[0]).is_file():
                problems.append(f"{self.root / 'list.txt'}:{number}: missing image {fields[0]}")
                continue
            self._parts[fields[4]].append(Sample(str(self.root / fields[0]), int(fields[1]), int(fields[2]),
                                                 fields[3]))
        if not problems and not all(self._parts.values()):
            problems.append(f"{self.root / 'list.txt'}: a split is empty")

    def train(self, trial: int = 0) -> list[Sample]:
        return list(self._parts["train"])

    def test_split(self, direction: Direction = "ir2vis", trial: int = 0) -> EvalSplit:
        self.check_direction_and_trial(direction, trial)
        query, gallery = ("ir", "vis") if direction == "ir2vis" else ("vis", "ir")
        test = self._parts["test"]
        return EvalSplit([s for s in test if s.modality == query], [s for s in test if s.modality == gallery],
                         direction, trial)

    @classmethod
    def write_synthetic(cls, out: Path, num_ids: int, seed: int) -> None:
        world = World(seed, num_ids, 2)
        train_ids, _ = split_ids(num_ids)
        lines = []
        for pid in range(1, num_ids + 1):
            for camera, modality in ((1, "vis"), (2, "ir")):
                for k in range(2):
                    relative = f"img/{pid}_{modality}_{k}.png"
                    save_image(world.image(pid - 1, camera, modality), out / relative, modality)
                    lines.append(f"{relative} {pid} {camera} {modality} {'train' if pid in train_ids else 'test'}")
        (out / "list.txt").write_text("\n".join(lines) + "\n")


@pytest.fixture
def market():
    register(Market)
    yield Market
    unregister(Market.name)


def test_a_reader_registered_at_run_time_is_picked_up_everywhere(market, tmp_path):
    assert dataset_class("market") is Market and "market (Market-VI)" in dataset_help()
    assert make_config({"dataset": "market", "data_root": "."}).dataset == "market"
    check_synthetic_layout("market", write_synthetic("market", tmp_path))
    check_fuzzed_index_files("market", write_synthetic("market", tmp_path / "fuzz"), tmp_path)
    check_command_line("market", tmp_path)


def test_unknown_datasets_are_refused_with_the_known_names():
    with pytest.raises(ConfigError, match="dataset: .*unknown dataset; choose from llcm, vcm, sysu, regdb, folder"):
        make_config({"dataset": "market", "data_root": "."})
    with pytest.raises(ReidError, match="unknown dataset 'market'"):
        dataset_class("market")


def test_the_shipped_readers_are_registered_under_their_names():
    assert list(DATASETS)[:len(READERS)] == [reader.name for reader in READERS]
    with pytest.raises(ValueError, match="registered already"):
        register(type("Other", (Market,), {"name": "llcm"}))
