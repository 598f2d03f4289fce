import json
import multiprocessing
import os
import shutil
import stat
import time

import numpy as np
import pytest

from reid.index import Gallery, GalleryError, gallery_lock


def small_gallery(seed=0, count=40, backbone="attnet_xxs"):
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((count, 16)).astype(np.float32)
    rows = [{"path": f"{seed}_{i}.jpg", "pid": i % 4, "camid": 1, "modality": "vis"} for i in range(count)]
    return Gallery.build(vectors, rows, backbone, checkpoint_digest=f"digest{seed}")


def test_a_manifest_from_another_gallery_is_refused(tmp_path):
    first = small_gallery(0).save(tmp_path / "a")
    second = small_gallery(1).save(tmp_path / "b")
    shutil.copy(second / "manifest.json", first / "manifest.json")
    with pytest.raises(GalleryError, match="index.faiss: does not match its manifest"):
        Gallery.load(first)


def test_edited_metadata_is_refused(tmp_path):
    saved = small_gallery().save(tmp_path / "g")
    lines = (saved / "metadata.jsonl").read_text().replace('"pid": 1', '"pid": 2')
    (saved / "metadata.jsonl").write_text(lines)
    with pytest.raises(GalleryError, match="metadata.jsonl: does not match its manifest"):
        Gallery.load(saved)


@pytest.mark.parametrize("change, message", [
    (lambda m: m["index"].update(colour="red"), "unknown key 'index.colour'"),
    (lambda m: m["index"].update(type="annoy"), "unknown index type 'annoy'"),
    (lambda m: m["index"].update(nprobe=-3), "index.nprobe: Input should be greater than or equal to 1"),
    (lambda m: m.update(index=[1, 2]), "index: Input should be a valid dictionary"),
    (lambda m: m.update(owner="me"), "unknown key 'owner'"),
    (lambda m: m.pop("total_rows"), "missing key 'total_rows'"),
    (lambda m: m.update(embedding_size="16"), "embedding_size: Input should be a valid integer"),
    (lambda m: m.update(files=["index.faiss"]), "files: Input should be a valid dictionary"),
    (lambda m: m.update(items="lots"), "items: Input should be a valid integer"),
    (lambda m: m.update(extra=[1, 2]), "extra: Input should be a valid dictionary"),
    (lambda m: m.update(factory=None) or m["index"].update(type="hnsw"), "an IndexFlatIP, but the manifest says a "
                                                                          "hnsw index \\(IndexHNSWFlat\\)"),
])
def test_manifests_of_the_wrong_shape_are_named(tmp_path, change, message):
    saved = small_gallery().save(tmp_path / "g")
    manifest = json.loads((saved / "manifest.json").read_text())
    change(manifest)
    (saved / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(GalleryError, match=message):
        Gallery.load(saved)


def test_saves_replace_atomically_and_respect_the_umask(tmp_path):
    previous = os.umask(0o022)
    try:
        target = small_gallery(0).save(tmp_path / "g")
    finally:
        os.umask(previous)
    small_gallery(1, count=10).save(target)
    assert Gallery.load(target).live_count == 10
    assert sorted(p.name for p in tmp_path.iterdir() if ".lock" not in p.name) == ["g"]  # no staging or backup
    assert stat.S_IMODE(target.stat().st_mode) & 0o055 == 0o055  # group and others can read (umask 022)


def test_an_unwritable_destination_is_a_gallery_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(GalleryError, match="file.*cannot be created"):
        small_gallery().save(blocker / "g")


def _add_items(directory, name, count, started, pause):
    # run in a separate process: load under the lock, wait so the writers overlap, add, save
    rng = np.random.default_rng(abs(hash(name)) % 2 ** 32)
    with Gallery.updating(directory) as gallery:
        started.set()
        time.sleep(pause)
        gallery.add(rng.standard_normal((count, 16)).astype(np.float32),
                    [{"path": f"{name}_{i}.jpg"} for i in range(count)])


def test_concurrent_writers_take_turns_and_lose_nothing(tmp_path):
    target = small_gallery(count=10).save(tmp_path / "g")
    context = multiprocessing.get_context("spawn")
    first_started, second_started = context.Event(), context.Event()
    first = context.Process(target=_add_items, args=(target, "first", 7, first_started, 1.0))
    second = context.Process(target=_add_items, args=(target, "second", 5, second_started, 0.0))
    first.start()
    assert first_started.wait(60)
    second.start()  # asks for the lock while the first process holds it
    for process in (first, second):
        process.join(60)
        assert process.exitcode == 0
    gallery = Gallery.load(target)
    assert gallery.live_count == 10 + 7 + 5
    paths = [row["path"] for row in gallery.table.rows()]
    assert sum(p.startswith("first_") for p in paths) == 7 and sum(p.startswith("second_") for p in paths) == 5


def test_a_held_lock_makes_a_writer_wait_then_give_up(tmp_path):
    target = small_gallery().save(tmp_path / "g")
    told = []
    with gallery_lock(target):
        context = multiprocessing.get_context("spawn")
        with pytest.raises(GalleryError, match="the gallery .* has been in use by process \\d+ on .* for 0 s"), \
                context.Pool(1) as pool:
            pool.apply(_locked_briefly, (target,))
    with gallery_lock(target, timeout=1, waiting=lambda holder: told.append(holder)):
        pass
    assert told == []  # free again: no waiting


def _locked_briefly(target):
    with gallery_lock(target, timeout=0.3):
        pass


def test_damaged_gallery_files_give_gallery_errors(tmp_path):
    """Fuzz: random damage to each file of a gallery (with and without the manifest's digests) is a
    GalleryError on load, never another exception."""
    pristine = small_gallery().save(tmp_path / "pristine")
    rng = np.random.default_rng(0)
    refused = 0
    for attempt in range(60):
        target = tmp_path / f"g{attempt}"
        shutil.copytree(pristine, target)
        if attempt % 2:  # without digests, the index and metadata readers meet the damage themselves
            manifest = json.loads((target / "manifest.json").read_text())
            del manifest["files"]
            (target / "manifest.json").write_text(json.dumps(manifest))
        name = ["index.faiss", "metadata.jsonl", "manifest.json"][attempt % 3]
        data = bytearray((target / name).read_bytes())
        kind = rng.integers(4)
        if kind == 0:
            data = data[:int(rng.integers(0, len(data)))]
        elif kind == 1:
            for position in rng.integers(0, len(data), 8):
                data[position] = int(rng.integers(0, 256))
        elif kind == 2 and name != "index.faiss":
            text = data.decode(errors="replace")
            data = bytearray(text.replace('"pid": 1', '"pid": [1]').replace('"type"', '"kind"')
                             .replace("{", "[", 1).encode())
        else:
            data = bytearray(b"null" if name != "index.faiss" else b"")
        (target / name).write_bytes(bytes(data))
        try:
            Gallery.load(target)
        except GalleryError:
            refused += 1
    assert refused >= 45


def test_a_gallery_through_a_symbolic_link_is_changed_where_it_is(tmp_path):
    real = small_gallery(count=10).save(tmp_path / "real")
    link = tmp_path / "link"
    link.symlink_to(real)
    with Gallery.updating(link) as gallery:
        gallery.add(np.ones((3, 16), np.float32), [{"path": f"new{i}.jpg"} for i in range(3)])
    assert link.is_symlink() and Gallery.load(real).live_count == 13 and Gallery.load(link).live_count == 13
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".real.lock")) == ["link", "real"]


def test_a_path_that_cannot_be_a_gallery_is_named():
    with pytest.raises(GalleryError, match="/: cannot be a gallery directory"):
        Gallery.load("/")


def _save_alternately(target, stop):
    small, large = small_gallery(1, count=10), small_gallery(2, count=300)
    while not stop.is_set():
        for gallery in (small, large):
            gallery.save(target)


def test_readers_beside_a_writer_always_see_one_whole_version(tmp_path):
    target = small_gallery(1, count=10).save(tmp_path / "g")
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    writer = context.Process(target=_save_alternately, args=(target, stop))
    writer.start()
    try:
        seen, loads = set(), 0
        deadline = time.monotonic() + 90
        while (seen != {10, 300} or loads < 300) and time.monotonic() < deadline:
            gallery = Gallery.load(target)  # never an error while a save swaps the directory
            assert gallery.live_count == len(gallery.table) == gallery.index.ntotal in (10, 300)
            seen.add(gallery.live_count)
            loads += 1
    finally:
        stop.set()
        writer.join(60)
    assert seen == {10, 300} and loads >= 300


def test_a_save_that_crashed_between_its_renames_is_finished_by_the_next_process(tmp_path):
    target = small_gallery(1, count=10).save(tmp_path / "g")
    newer = small_gallery(2, count=30).save(tmp_path / "newer")
    target.rename(tmp_path / ".g.old-999999")  # the first rename happened...
    newer.rename(tmp_path / ".g.saving-abc")  # ...the second did not
    assert Gallery.load(target).live_count == 30  # the complete new copy is put in place
    assert sorted(p.name for p in tmp_path.iterdir() if ".lock" not in p.name) == ["g"]  # and the rest cleaned


def test_a_full_disk_leaves_the_gallery_as_it_was_and_no_copy(tmp_path, monkeypatch):
    import faiss

    target = small_gallery(1, count=10).save(tmp_path / "g")

    def full(index, path):
        raise RuntimeError("Error in faiss::FileIOWriter::operator()... ret == (n): write error: No space left")

    monkeypatch.setattr(faiss, "write_index", full)
    with pytest.raises(GalleryError, match="g: cannot write the gallery \\(.*No space left\\)"):
        small_gallery(2, count=30).save(target)
    assert Gallery.load(target).live_count == 10
    assert sorted(p.name for p in tmp_path.iterdir() if ".lock" not in p.name) == ["g"]


def test_a_gallery_missing_a_file_says_which(tmp_path):
    target = small_gallery().save(tmp_path / "g")
    (target / "metadata.jsonl").unlink()
    with pytest.raises(GalleryError, match="metadata.jsonl: missing"):
        Gallery.load(target)
    (target / "manifest.json").unlink()
    with pytest.raises(GalleryError, match="not a gallery \\(no manifest.json\\)"):
        Gallery.load(target)


@pytest.mark.parametrize("name, other", [("g[1]", None), ("gx?", "gxa"), ("g*", "gb")])
def test_a_gallery_name_with_glob_characters_is_taken_literally(name, other, tmp_path):
    target = small_gallery(1, count=10).save(tmp_path / name)
    if other:  # another gallery, whose name the pattern would match, with a crashed save of its own
        small_gallery(3, count=50).save(tmp_path / other)
        small_gallery(4, count=70).save(tmp_path / "spare").rename(tmp_path / f".{other}.saving-abc")
    newer = small_gallery(2, count=30).save(tmp_path / "newer")
    target.rename(tmp_path / f".{name}.old-999999")  # a crash between the two renames of a save
    newer.rename(tmp_path / f".{name}.saving-def")
    assert Gallery.load(target).live_count == 30  # its own staging copy, not the other gallery's
    if other:
        assert (tmp_path / f".{other}.saving-abc").exists() and Gallery.load(tmp_path / other).live_count == 50


def test_a_manifest_nested_too_deeply_is_a_gallery_error(tmp_path):
    saved = small_gallery().save(tmp_path / "g")
    (saved / "manifest.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(GalleryError, match="manifest"):
        Gallery.load(saved)
