import pytest

from reid.io import atomic_write, atomic_write_text


def test_atomic_write_replaces_only_when_complete(tmp_path):
    target = atomic_write_text(tmp_path / "a" / "file.txt", "first")
    assert target.read_text() == "first"

    def crash(temporary):
        temporary.write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, crash)
    assert target.read_text() == "first"
    assert [p.name for p in target.parent.iterdir()] == ["file.txt"]  # no temporary left behind
