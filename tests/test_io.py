import os
import stat

import pytest

from reid.errors import ReidError
from reid.io import atomic_write, atomic_write_text, directory, ensure_writable, exclusive_lock, regular_file


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


def test_a_full_disk_is_a_user_error_and_leaves_nothing(tmp_path):
    def full(temporary):  # what torch.save and faiss.write_index raise when the disk fills up
        temporary.write_bytes(b"part")
        raise RuntimeError("[enforce fail at inline_container.cc:778] . PytorchStreamWriter failed writing file "
                           "data/0: file write failed")

    with pytest.raises(ReidError, match="last.pt: cannot be written \\(.*file write failed\\)"):
        atomic_write(tmp_path / "last.pt", full)
    assert list(tmp_path.iterdir()) == []


def test_temporary_files_of_dead_writers_are_removed_by_the_next_write(tmp_path):
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    (tmp_path / f".last.pt.{dead}.abc.tmp").write_bytes(b"31 MB of a checkpoint")
    (tmp_path / f".last.pt.{os.getpid()}.live.tmp").write_bytes(b"a write in progress")  # this process: kept
    atomic_write_text(tmp_path / "last.pt", "new")
    assert sorted(p.name for p in tmp_path.iterdir()) == [f".last.pt.{os.getpid()}.live.tmp", "last.pt"]


def test_only_regular_files_count(tmp_path):
    os.mkfifo(tmp_path / "pipe.jpg")
    assert not regular_file(tmp_path / "pipe.jpg") and not regular_file("/dev/zero")
    assert not regular_file(tmp_path / ("x" * 300)) and not directory(tmp_path / ("x" * 300))  # no exception
    (tmp_path / "a.jpg").write_bytes(b"x")
    assert regular_file(tmp_path / "a.jpg") and directory(tmp_path)


def _hold(path, held, release):
    with exclusive_lock(path, "the thing"):
        held.set()
        release.wait(60)


def test_a_held_lock_names_its_holder_and_is_freed_when_the_holder_dies(tmp_path):
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    held, release = context.Event(), context.Event()
    holder = context.Process(target=_hold, args=(tmp_path / ".lock", held, release))
    holder.start()
    assert held.wait(60)
    with pytest.raises(ReidError, match=f"the thing is in use by process {holder.pid} on "), \
            exclusive_lock(tmp_path / ".lock", "the thing", timeout=0):
        pass
    holder.kill()  # a killed holder: the operating system releases its lock
    holder.join(60)
    told = []
    with exclusive_lock(tmp_path / ".lock", "the thing", timeout=5, waiting=told.append), \
            exclusive_lock(tmp_path / ".lock", "the thing", timeout=0):  # the holder may take it again
        pass
    assert told == []
