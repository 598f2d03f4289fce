import pytest

from reid.data import DatasetError, RegDB


def test_splits_per_trial(synthetic):
    root = synthetic("regdb")  # 10 ids, 5 images per modality; each split: 5 train ids, 5 test ids
    dataset = RegDB(root)
    for trial in (0, 9):
        train = dataset.train(trial)
        thermal = (root / f"idx/train_thermal_{trial + 1}.txt").read_text().splitlines()
        labels = {int(line.split()[1]) for line in thermal}
        assert sorted({s.pid for s in train}) == sorted(labels) and len(labels) == 5 and len(train) == 50
        split = dataset.test_split("vis2ir", trial)
        assert {s.modality for s in split.query} == {"vis"} and {s.camid for s in split.gallery} == {2}
        listed = (root / f"idx/train_visible_{trial + 1}.txt").read_text().split("\n")
        visible = {s.path for s in train if s.modality == "vis"}
        assert {str(root / line.split()[0]) for line in listed if line} == visible
        test_ids = {int(line.split()[1]) for line in (root / f"idx/test_thermal_{trial + 1}.txt").read_text().split(
            "\n") if line}
        assert {s.pid for s in split.gallery} == test_ids
    assert dataset.test_split("ir2vis", 0).query[0].path.endswith(".bmp")


def test_missing_split_file(damaged):
    root = damaged("regdb")
    (root / "idx/test_thermal_4.txt").unlink()
    with pytest.raises(DatasetError, match="test_thermal_4.txt: missing index file"):
        RegDB(root)
