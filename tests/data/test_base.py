"""The parsing helpers every reader shares: index lines, path/label lists, identity lists, identity folders."""
from reid.data.base import (
    camera_from_path,
    list_images,
    read_id_list,
    read_index_lines,
    read_path_labels,
    scan_identity_folders,
)


def test_index_lines_keep_their_numbers_and_skip_blank_lines(tmp_path):
    (tmp_path / "list.txt").write_text("a\n\n  b  \n")
    problems = []
    assert read_index_lines(tmp_path, "list.txt", problems) == [(1, "a"), (3, "b")] and problems == []
    assert read_index_lines(tmp_path, "missing.txt", problems) is None
    assert problems == [f"{tmp_path / 'missing.txt'}: missing index file"]


def test_path_label_lists_name_every_bad_line(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "img/a.jpg").write_bytes(b"x")
    (tmp_path / "list.txt").write_text("img/a.jpg 3\nimg/a.jpg 3\nimg/b.jpg 4\n../x.jpg 1\nimg/a.jpg three\n")
    problems = []
    assert read_path_labels(tmp_path, "list.txt", problems) == [(str(tmp_path / "img/a.jpg"), 3)]
    where = tmp_path / "list.txt"
    assert problems == [f"{where}:2: img/a.jpg is listed again (first on line 1)",
                        f"{where}:3: missing image {tmp_path / 'img/b.jpg'}",
                        f"{where}:4: ../x.jpg is outside the dataset root (paths are relative to {tmp_path})",
                        f"{where}:5: expected 'relative/path label', got 'img/a.jpg three'"]
    (tmp_path / "empty.txt").write_text("\n")
    read_path_labels(tmp_path, "empty.txt", problems)
    assert problems[-1] == f"{tmp_path / 'empty.txt'}: empty index file"


def test_identity_lists_take_commas_or_spaces(tmp_path):
    (tmp_path / "ids.txt").write_text("3,1, 2\n2 7\nx\n")
    problems = []
    assert read_id_list(tmp_path, "ids.txt", problems) == [1, 2, 3, 7]
    assert problems == [f"{tmp_path / 'ids.txt'}:3: 'x' is not an identity number"]


def test_identity_folders_by_camera(tmp_path):
    for camera, pid, name in ((1, 1, "b.jpg"), (1, 1, "a.png"), (2, 1, "c.jpg"), (2, 2, "notes.txt")):
        (tmp_path / f"cam{camera}/{pid:04d}").mkdir(parents=True, exist_ok=True)
        (tmp_path / f"cam{camera}/{pid:04d}/{name}").write_bytes(b"x")
    problems = []
    files = scan_identity_folders(tmp_path, {1: "cam1", 2: "cam2"}, [1, 2, 3], problems, "cam*/")
    assert files == {(1, 1): [str(tmp_path / "cam1/0001/a.png"), str(tmp_path / "cam1/0001/b.jpg")],
                     (1, 2): [str(tmp_path / "cam2/0001/c.jpg")]}
    assert problems == [f"{tmp_path / 'cam2/0002'}: empty identity folder", "identity 0002 has no images under cam*/",
                        "identity 0003 has no images under cam*/"]
    assert list_images(tmp_path / "nowhere") is None
    assert camera_from_path("test_vis/cam7/0001/x.jpg") == 7 and camera_from_path("x.jpg") == 0
