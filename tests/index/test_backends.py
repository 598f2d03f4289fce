"""The two gallery backends, FAISS files and Milvus (the real pymilvus client against Milvus Lite, a collection per
test in a temporary .db), through the same calls: the same lifecycle, the same filters, the same answers."""
import subprocess
import sys

import numpy as np
import pytest
from ranking import assert_top_k_up_to_ties

from reid.index import GalleryError, IndexSettings
from reid.index.backends import build_gallery_at, open_store
from reid.index.migrate import migrate

pytest.importorskip("pymilvus", reason="the milvus extra is part of dev")
pytest.importorskip("milvus_lite", reason="the milvus extra is part of dev")
BACKENDS = ("faiss", "milvus")


@pytest.fixture
def address(tmp_path, request):
    """A fresh gallery address of the backend the test is parametrised with."""
    names = iter(range(100))

    def make(backend):
        number = next(names)
        return str(tmp_path / f"gallery{number}") if backend == "faiss" else f"milvus:{tmp_path}/m.db/g{number}"

    return make


def items(count=400, dim=16, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((12, dim))
    labels = rng.integers(0, 12, count)
    vectors = (centres[labels] + 0.4 * rng.standard_normal((count, dim))).astype(np.float32)
    metadata = [{"path": f"/data/img_{i}.jpg", "pid": int(labels[i]), "camid": None if i % 9 == 0 else int(i % 5),
                 "modality": "vis" if i % 2 else "ir", "label": None,
                 "timestamp": None if i % 4 == 0 else 1_700_000_000 + i} for i in range(count)]
    return vectors, metadata


def allowed(metadata, modality=None, exclude=None, cameras=None, since=None, until=None, pid=None):
    """The one filter rule, item by item: an unknown camera is in no camera list and excluded by none; an item
    without a time is in no time range."""
    def passes(item):
        camera, moment = item["camid"], item["timestamp"]
        return ((modality is None or item["modality"] == modality)
                and (not exclude or camera is None or camera not in exclude)
                and (cameras is None or (camera is not None and camera in cameras))
                and (since is None and until is None or moment is not None and moment >= (since or 0)
                     and (until is None or moment <= until))
                and (pid is None or item["pid"] == pid))

    return np.array([passes(item) for item in metadata])


FILTERS = [dict(), dict(modality="ir"), dict(cameras=[1, 3]), dict(exclude={0, 2}), dict(pid=4),
           dict(since=1_700_000_100, until=1_700_000_250), dict(modality="vis", exclude={1}, since=1_700_000_050)]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("filters", FILTERS, ids=lambda f: ",".join(f) or "none")
def test_every_filter_returns_the_exact_top_k_of_the_qualifying_items(backend, filters, address):
    vectors, metadata = items()
    gallery = build_gallery_at(address(backend), vectors, metadata, "attnet_xxs", IndexSettings(type="flat"), "d")
    queries = vectors[::37] + 0.05
    found = gallery.search(queries, 10, modality=filters.get("modality"), camids=filters.get("cameras"),
                           exclude_camids=[filters.get("exclude")] * len(queries), since=filters.get("since"),
                           until=filters.get("until"), pid=filters.get("pid"))
    mask = allowed(metadata, **filters)
    rows = [[int(hit.path.split("_")[1].split(".")[0]) for hit in hits] for hits in found]
    assert_top_k_up_to_ties(rows, queries, vectors, 10, mask, found_scores=[[h.score for h in r] for r in found])


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_gallery_lives_through_build_add_remove_and_reload_the_same_on_both(backend, address):
    vectors, metadata = items()
    where = address(backend)
    build_gallery_at(where, vectors[:300], metadata[:300], "attnet_xxs", IndexSettings(type="flat"), "digest-1",
                     {"dataset": "llcm"})
    store = open_store(where)
    first = store.current()
    assert first.live_count == 300 and first.manifest.extra == {"dataset": "llcm"}
    versions = [first.manifest.version]
    with store.updating() as gallery:
        added = gallery.add(vectors[290:], metadata[290:])  # ten of them are there already (by path)
    assert len(added) == 100 and len(set(added)) == 100
    versions.append(store.current().manifest.version)
    with store.updating() as gallery:
        assert gallery.remove(["/data/img_5.jpg", "/data/nope.jpg"]) == (1, ["/data/nope.jpg"])
        removed, missing = gallery.remove_ids([added[0], 10 ** 15])
        assert (removed, missing) == (1, [10 ** 15])
    versions.append(store.current().manifest.version)
    again = open_store(where).current()
    assert again.live_count == 398 and again.item(added[0]) is None and again.item(added[1])["path"] == \
        "/data/img_301.jpg"
    assert len(set(versions)) == 3 and versions == sorted(versions)  # every write is a new version
    assert again.counts_by_modality() == {"vis": 199, "ir": 199}
    live = [m for m in metadata if m["path"] not in ("/data/img_5.jpg", "/data/img_300.jpg")]
    assert again.cameras() == [0, 1, 2, 3, 4]
    assert again.unknown_camera_count() == sum(m["camid"] is None for m in live) == 45
    with pytest.raises(GalleryError, match="backbone 'resnet50' vs gallery 'attnet_xxs'"):
        again.check_model("resnet50", 16, "digest-1")
    with pytest.raises(GalleryError, match="checkpoint digest-2 vs gallery digest-1"):
        again.check_model("attnet_xxs", 16, "digest-2")
    total, page = again.page(0, 7, modality="ir")
    assert total == 199 and all(row["modality"] == "ir" for row in page) and len(page) == 7
    assert set(again.ids_of(pid=3, modality="vis")) == {row["id"] for row in again.page(0, 1000, modality="vis",
                                                                                        pid=3)[1]}


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_existing_gallery_is_replaced_only_when_asked(backend, address):
    vectors, metadata = items(50)
    where = address(backend)
    build_gallery_at(where, vectors, metadata, "attnet_xxs", IndexSettings(), None)
    with pytest.raises(GalleryError, match="already holds a gallery"):
        build_gallery_at(where, vectors[:10], metadata[:10], "attnet_xxs", IndexSettings(), None)
    build_gallery_at(where, vectors[:10], metadata[:10], "attnet_xxs", IndexSettings(), None, overwrite=True)
    assert open_store(where).current().live_count == 10


@pytest.mark.parametrize("route", [("faiss", "milvus"), ("milvus", "faiss")])
def test_a_migration_copies_every_item_and_its_metadata_both_ways(route, address):
    vectors, metadata = items()
    source, target = address(route[0]), address(route[1])
    build_gallery_at(source, vectors, metadata, "attnet_xxs", IndexSettings(type="flat"), "digest-1", {"k": "v"})
    with open_store(source).updating() as gallery:
        gallery.remove(["/data/img_7.jpg"])
    assert migrate(source, target) == 399
    copy = open_store(target).current()
    assert (copy.manifest.backbone, copy.manifest.checkpoint_digest, copy.manifest.extra) == \
        ("attnet_xxs", "digest-1", {"k": "v"})
    queries = vectors[:4]
    for one, other in zip(open_store(source).current().search(queries, 5), copy.search(queries, 5), strict=True):
        assert [hit.path for hit in one] == [hit.path for hit in other]
        assert [(hit.pid, hit.camid, hit.modality) for hit in one] == [(hit.pid, hit.camid, hit.modality)
                                                                       for hit in other]


def test_milvus_types_and_addresses_are_checked(address):
    vectors, metadata = items(50)
    with pytest.raises(GalleryError, match="--type ivfpq: a FAISS type; a Milvus gallery takes flat, hnsw, ivfflat"):
        build_gallery_at(address("milvus"), vectors, metadata, "attnet_xxs", IndexSettings(type="ivfpq"), None)
    for wrong in ("milvus://host/", "milvus:file/collection", "milvus://host:19530/a-b"):
        with pytest.raises(GalleryError, match="not a Milvus gallery address"):
            open_store(wrong)
    with pytest.raises(GalleryError, match="not a gallery"):
        open_store(address("milvus")).current()


def test_milvus_lite_serves_one_process_per_file_and_says_so(tmp_path):
    """What an embedded Milvus Lite cannot do that a server does: a second process on the same .db file is refused
    (Milvus Lite locks it); the error says how to share it (its server)."""
    vectors, metadata = items(20)
    where = f"milvus:{tmp_path}/one.db/g"
    build_gallery_at(where, vectors, metadata, "attnet_xxs", IndexSettings(), None)
    code = ("import sys; from reid.index.backends import open_store; from reid.errors import ReidError\n"
            f"try:\n    open_store({where!r}).current()\nexcept ReidError as error:\n    print(error)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "cannot connect" in result.stdout and "python -m milvus_lite server" in result.stdout, result.stderr[-500:]
