import json
import os
import shutil
import stat

import numpy as np
import pytest

from reid.index import Gallery, GalleryError


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
    (lambda m: m["index"].update(colour="red"), "unknown index setting 'colour'"),
    (lambda m: m["index"].update(type="annoy"), "unknown index type 'annoy'"),
    (lambda m: m["index"].update(nprobe=-3), "nprobe must be a positive integer"),
    (lambda m: m.update(index=[1, 2]), "the index settings must be a mapping"),
    (lambda m: m.update(owner="me"), "unknown key 'owner'"),
    (lambda m: m.pop("total_rows"), "no total_rows"),
    (lambda m: m.update(embedding_size="16"), "wrong type"),
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
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g"]  # no staging or backup folder left
    assert stat.S_IMODE(target.stat().st_mode) & 0o055 == 0o055  # group and others can read (umask 022)


def test_an_unwritable_destination_is_a_gallery_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(GalleryError, match="cannot write the gallery"):
        small_gallery().save(blocker / "g")
