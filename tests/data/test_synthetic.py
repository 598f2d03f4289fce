import hashlib

import pytest
from checks import check_command_line, check_synthetic_layout

from reid.data import DATASETS, load_dataset, make_dataset
from reid.errors import ReidError


def digest(root):
    h = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            h.update(str(path.relative_to(root)).encode() + path.read_bytes())
    return h.hexdigest()


@pytest.mark.parametrize("layout", DATASETS)
def test_every_layout_parses_cleanly(synthetic, layout):
    check_synthetic_layout(layout, synthetic(layout))


@pytest.mark.parametrize("layout", DATASETS)
def test_every_layout_through_the_command_line(tmp_path, layout):
    check_command_line(layout, tmp_path)


def test_deterministic_and_seeded(tmp_path):
    a = make_dataset("regdb", tmp_path / "a", 6, seed=3)
    b = make_dataset("regdb", tmp_path / "b", 6, seed=3)
    c = make_dataset("regdb", tmp_path / "c", 6, seed=4)
    assert digest(a) == digest(b) != digest(c)


def test_ids_scale_the_dataset(tmp_path):
    small = load_dataset("llcm", make_dataset("llcm", tmp_path / "s", 6))
    large = load_dataset("llcm", make_dataset("llcm", tmp_path / "l", 20))
    assert len(large.train()) > len(small.train())


def test_refuses_to_overwrite_and_bad_arguments(tmp_path):
    make_dataset("regdb", tmp_path / "r", 4)
    with pytest.raises(ReidError, match="already holds a synthetic dataset \\(pass --overwrite"):
        make_dataset("regdb", tmp_path / "r", 4)
    assert make_dataset("llcm", tmp_path / "r", 4, overwrite=True) == tmp_path / "r"  # its own: replaced
    with pytest.raises(ReidError, match="unknown dataset"):
        make_dataset("market", tmp_path / "m")
    with pytest.raises(ReidError, match="at least 4"):
        make_dataset("llcm", tmp_path / "x", 2)


def test_a_folder_of_someone_elses_files_is_never_replaced(tmp_path):
    """--overwrite replaces a synthetic dataset written before, never a user's folder (nor a real dataset)."""
    own = tmp_path / "mine"
    own.mkdir()
    (own / "notes.txt").write_text("keep me")
    for overwrite in (False, True):
        with pytest.raises(ReidError, match="holds files reid did not write \\(notes.txt\\)"):
            make_dataset("llcm", own, 4, overwrite=overwrite)
    assert (own / "notes.txt").read_text() == "keep me" and sorted(p.name for p in own.iterdir()) == ["notes.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert make_dataset("llcm", empty, 4) == empty  # an empty folder is fine
    (tmp_path / ".other.partial").mkdir()
    (tmp_path / ".other.partial" / "x").write_text("not ours")
    with pytest.raises(ReidError, match="is in the way"):
        make_dataset("llcm", tmp_path / "other", 4)
    assert (tmp_path / ".other.partial" / "x").read_text() == "not ours"
