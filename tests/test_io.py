import os
import stat

import pytest

from reid.errors import ReidError
from reid.io import atomic_write, atomic_write_text, ensure_writable


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


def test_written_files_follow_the_umask(tmp_path):
    previous = os.umask(0o022)
    try:
        target = atomic_write_text(tmp_path / "report.json", "{}")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(target.stat().st_mode) == 0o644  # readable by colleagues, not the temp file's 0600


def test_unwritable_paths_are_user_errors(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(ReidError, match=f"{blocker / 'out.txt'}: cannot be written"):
        atomic_write_text(blocker / "out.txt", "data")
    with pytest.raises(ReidError, match="cannot be written"):
        ensure_writable(blocker / "sub" / "metrics.json")
    with pytest.raises(ReidError, match="is a directory"):
        ensure_writable(tmp_path)
    assert ensure_writable(tmp_path / "new" / "m.json") == tmp_path / "new" / "m.json"
    assert (tmp_path / "new").is_dir() and not any((tmp_path / "new").iterdir())  # the probe is gone
