"""Your own data: a CSV of labelled images or a folder tree, split by identity or by the CSV's split column."""
import shutil

import pytest

from reid.data import DatasetError, load_dataset
from reid.data.folder import Folder, camera_in


def test_the_csv_without_splits_holds_out_the_last_identities(synthetic):
    dataset = Folder(synthetic("folder"))  # 10 identities: 6 train, 4 test
    assert sorted({s.pid for s in dataset.train()}) == list(range(1, 7))
    split = dataset.test_split("ir2vis")
    assert {s.pid for s in split.query} == {s.pid for s in split.gallery} == {7, 8, 9, 10}
    assert {s.modality for s in split.query} == {"ir"} and {s.modality for s in split.gallery} == {"vis"}
    assert {s.modality for s in dataset.test_split("vis2ir").query} == {"vis"}
    assert all(s.camid in (1, 2, 3, 4) for s in dataset.train())


def test_a_split_column_says_where_each_image_goes(damaged):
    root = damaged("folder")
    lines = (root / "samples.csv").read_text().splitlines()
    rows = [line + (",split" if number == 0 else ",train" if int(line.split(",")[1]) <= 5 else
                    ",query" if line.split(",")[3] == "ir" else ",gallery") for number, line in enumerate(lines)]
    (root / "samples.csv").write_text("\n".join(rows) + "\n")
    dataset = Folder(root)
    assert sorted({s.pid for s in dataset.train()}) == [1, 2, 3, 4, 5]
    assert {s.modality for s in dataset.test_split("ir2vis").query} == {"ir"}
    assert not dataset.test_split("vis2ir").query  # the query split holds infrared images only


def test_a_folder_tree_takes_cameras_from_the_file_names(tmp_path, synthetic):
    source = synthetic("folder")
    for path in sorted((source / "images").iterdir()):
        pid, modality, camera, k = path.stem.split("_")
        target = tmp_path / "tree" / modality / str(int(pid)) / f"{camera}_{k}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
    dataset = load_dataset("folder", tmp_path / "tree")
    assert len(dataset.train()) + len(dataset.test_split().query) + len(dataset.test_split().gallery) == 80
    assert {s.camid for s in dataset.train()} <= {1, 2, 3, 4} and camera_in("pic3.jpg") == -1
    assert camera_in("cam12_x.jpg") == 12 and camera_in("x_c3.png") == 3


@pytest.mark.parametrize("line, message", [
    ("images/missing.jpg,1,1,vis", "missing image"),
    ("images/0001_vis_c1_0.jpg,one,1,vis", "identity must be a number"),
    ("images/0001_vis_c1_0.jpg,1,left,vis", "camera must be a number or empty"),
    ("images/0001_vis_c1_0.jpg,1,1,plasma", "modality must be vis or ir"),
    ("../outside.jpg,1,1,vis", "not a path inside the dataset root"),
])
def test_every_bad_row_is_named(damaged, line, message):
    root = damaged("folder")
    with open(root / "samples.csv", "a") as handle:
        handle.write(line + "\n")
    with pytest.raises(DatasetError, match=message):
        Folder(root)


def test_a_header_without_the_columns_is_refused(damaged):
    root = damaged("folder")
    (root / "samples.csv").write_text("file,person\n")
    with pytest.raises(DatasetError, match="the header needs path, identity, camera, modality"):
        Folder(root)
