import pytest
from reference_sampling import reference_gallery

from reid.data import SYSUMM01, DatasetError


def sysu_reference_gallery(root, trial, mode):
    cameras = ["cam1", "cam2", "cam4", "cam5"] if mode == "all" else ["cam1", "cam2"]
    return reference_gallery(root, trial, cameras, (root / "exp/test_id.txt").read_text().split(","))


@pytest.mark.parametrize("mode", ["all", "indoor"])
@pytest.mark.parametrize("trial", [0, 7])
def test_query_and_gallery(synthetic, mode, trial):
    root = synthetic("sysu")  # 10 ids: test 4, val 1, train 5
    split = SYSUMM01(root, mode=mode).test_split("ir2vis", trial)
    assert [s.path for s in split.gallery] == sysu_reference_gallery(root, trial, mode)
    assert {s.camid for s in split.query} <= {3, 6} and {s.modality for s in split.query} == {"ir"}
    assert {s.pid for s in split.query} == {7, 8, 9, 10}
    if mode == "indoor":
        assert {s.camid for s in split.gallery} <= {1, 2}


def test_training_uses_train_and_val_ids(synthetic):
    root = synthetic("sysu")
    dataset = SYSUMM01(root)
    train = dataset.train()
    listed = {int(pid) for name in ("train_id", "val_id") for pid in (root / f"exp/{name}.txt").read_text().split(",")}
    assert sorted({s.pid for s in train}) == sorted(listed) and len(listed) == 6  # the folders' own numbers
    assert all((s.modality == "ir") == (s.camid in (3, 6)) for s in train)


def test_only_the_official_direction_and_modes(synthetic):
    with pytest.raises(DatasetError, match="no 'vis2ir' search"):
        SYSUMM01(synthetic("sysu")).test_split("vis2ir")
    with pytest.raises(DatasetError, match="no search mode 'outdoor'; use all or indoor"):
        SYSUMM01(synthetic("sysu"), mode="outdoor")


def test_bad_id_list(damaged):
    root = damaged("sysu")
    (root / "exp/test_id.txt").write_text("7,8,x9\n")
    with pytest.raises(DatasetError, match="test_id.txt:1: 'x9' is not an identity number"):
        SYSUMM01(root)
