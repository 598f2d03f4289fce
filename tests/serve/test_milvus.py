"""``reid serve`` over a Milvus gallery, with the real pymilvus client: Milvus Lite embedded in the test process,
and Milvus Lite's server for several processes. A served Milvus gallery answers as the FAISS gallery it was copied
from, and servers that hold nothing see every write at once, whoever makes it."""
import shutil
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest
from fastapi.testclient import TestClient

from reid.data import load_dataset
from reid.index.migrate import migrate
from reid.serve.app import create_app
from reid.serve.service import GalleryService

pytest.importorskip("pymilvus", reason="the milvus extra is part of dev")
pytest.importorskip("milvus_lite", reason="the milvus extra is part of dev")
TOKEN = "a-test-token-of-enough-length"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def upload(*paths):
    return [("images", (f"q{number}.jpg", open(path, "rb").read(), "image/jpeg"))
            for number, path in enumerate(paths)]


def keyed(hits):
    """A result list as (what the item is, its score): ids are each backend's own, the items are the same."""
    return [((hit["file"], hit["pid"], hit["camid"], hit["modality"]), hit["score"]) for hit in hits]


def assert_same_hits(got, want, atol=2e-5):
    """The same items with the same scores, best first, up to ties (an item tied with the last may stand in for
    another). The backends compute inner products with different kernels (within 1e-6), and answers round scores
    to 5 decimals, so one score may land a rounding step (1e-5) away from the other: the tolerance is two steps."""
    assert len(got) == len(want)
    scores = dict(want)
    assert len(scores) == len(want)  # the keys name items
    for rank, ((key, score), (_, expected)) in enumerate(zip(got, want, strict=True)):
        assert score == pytest.approx(expected, abs=atol), rank
        if key in scores:
            assert score == pytest.approx(scores[key], abs=atol), key
        else:
            assert abs(score - want[-1][1]) <= atol, key


@pytest.fixture
def both(served, embedder, tmp_path):
    """Test clients of the served gallery as FAISS files and as a Milvus Lite collection copied from it."""
    files = tmp_path / "gallery"
    shutil.copytree(served[2], files)
    address = f"milvus:{tmp_path}/serve.db/gallery"
    assert migrate(str(files), address) > 0
    return {name: TestClient(create_app(GalleryService(embedder, where), TOKEN, None), raise_server_exceptions=False)
            for name, where in (("faiss", files), ("milvus", address))}


def item_of(client, file_name):
    page = client.get("/api/v1/items", params={"limit": 200}).json()["items"]
    return next(item for item in page if item["file"] == file_name)


def test_a_milvus_gallery_answers_every_search_as_the_faiss_gallery_it_was_copied_from(both, served):
    faiss_client, milvus_client = both["faiss"], both["milvus"]
    faiss_info, milvus_info = (client.get("/api/v1/gallery").json() for client in (faiss_client, milvus_client))
    assert milvus_info["items"] == faiss_info["items"] and milvus_info["backend"] == "milvus"
    assert milvus_info["cameras"] == faiss_info["cameras"] and milvus_info["by_modality"] == faiss_info["by_modality"]
    assert (faiss_info["backend"], milvus_client.get("/api/v1/health").json()["backend"]) == ("faiss", "milvus")
    queries = load_dataset("llcm", served[0]).test_split("ir2vis", 0).query[:3]
    searches = [dict(top_k="100"), dict(modality="vis", top_k="7"), dict(cameras=["1", "2"], top_k="100"),
                dict(exclude_cameras=["1"], modality="ir", top_k="100"), dict(min_score="0.5", top_k="100")]
    for data in searches:
        got, want = (client.post("/api/v1/search", files=upload(*(q.path for q in queries)), data=data).json()
                     for client in (milvus_client, faiss_client))
        for mine, theirs in zip(got["results"], want["results"], strict=True):
            assert_same_hits(keyed(mine["hits"]), keyed(theirs["hits"]))
    some = faiss_client.get("/api/v1/items", params={"limit": 1, "offset": 3}).json()["items"][0]
    for data in (dict(top_k="100"), dict(top_k="100", exclude_identity="true"), dict(top_k="5", modality="ir")):
        got, want = (client.post("/api/v1/search", data={"item_id": str(item_of(client, some["file"])["item_id"]),
                                                         **data}).json()
                     for client in (milvus_client, faiss_client))
        assert got["results"][0]["query_pid"] == want["results"][0]["query_pid"] == some["pid"]
        assert_same_hits(keyed(got["results"][0]["hits"]), keyed(want["results"][0]["hits"]))
        assert some["file"] not in [hit["file"] for hit in got["results"][0]["hits"]]  # never the item itself
    pages = [client.get("/api/v1/items", params={"modality": "ir", "limit": 200}).json() for client in both.values()]
    assert pages[0]["total"] == pages[1]["total"]
    assert sorted(i["file"] for i in pages[0]["items"]) == sorted(i["file"] for i in pages[1]["items"])


def test_writes_to_a_milvus_gallery_through_the_api(both, served):
    client = both["milvus"]
    before = client.get("/api/v1/gallery").json()["items"]
    known = {item["file"] for item in client.get("/api/v1/items", params={"limit": 200}).json()["items"]}
    new = next(s for s in load_dataset("llcm", served[0]).test_split("ir2vis", 0).query if s.path.split("/")[-1]
               not in known)
    added = client.post("/api/v1/items", files=upload(new.path), data={"pid": "77", "modality": "ir"},
                        headers=AUTH).json()
    assert added["added"] == 1 and added["items"] == before + 1
    (item,) = added["item_ids"]
    hit = client.post("/api/v1/search", files=upload(new.path), data={"top_k": "1"}).json()["results"][0]["hits"][0]
    assert (hit["item_id"], hit["pid"], hit["modality"]) == (item, 77, "ir")
    assert client.get(f"/api/v1/items/{item}/thumbnail").headers["content-type"] == "image/jpeg"
    assert client.delete(f"/api/v1/items/{item}", headers=AUTH).json()["removed"] == 1
    stale = client.delete(f"/api/v1/items/{item}", headers=AUTH)
    assert stale.status_code in (404, 409) and "\n" not in stale.json()["error"]
    hits = client.post("/api/v1/search", files=upload(new.path), data={"top_k": "100"}).json()["results"][0]["hits"]
    assert item not in [hit["item_id"] for hit in hits] and client.get("/api/v1/gallery").json()["items"] == before
    again = client.post("/api/v1/items", files=upload(new.path), headers=AUTH).json()
    assert again["item_ids"][0] > item  # Milvus never gives an id twice either


@pytest.fixture
def milvus_server(tmp_path):
    """Milvus Lite's server on a free loopback port: the address of a collection on it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-m", "milvus_lite", "server", "--data-dir", str(tmp_path / "db"),
                                "--host", "127.0.0.1", "--port", str(port)], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"milvus_lite server exited: {process.communicate()[0][-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            time.sleep(0.3)
    yield f"milvus://127.0.0.1:{port}/gallery"
    process.terminate()
    process.communicate(timeout=30)


@pytest.mark.slow
def test_two_servers_answer_from_one_milvus_gallery_while_a_command_adds_to_it(served, milvus_server, start_serve,
                                                                                tmp_path):
    """Two ``reid serve`` processes over one collection of a Milvus server (Milvus Lite's), a ``reid index add``
    in a third process while both answer searches: no search fails, and both servers see the new items without a
    restart, as each sees the other's writes."""
    migrated = subprocess.run([sys.executable, "-m", "reid", "index", "migrate", "--from", str(served[2]), "--to",
                               milvus_server], capture_output=True, text=True, timeout=300)
    assert migrated.returncode == 0, migrated.stderr
    arguments = ["--index", milvus_server, "--checkpoint", str(served[1]), "--device", "cpu", "--uploads",
                 str(tmp_path / "uploads")]
    servers = [start_serve(arguments, {"REID_SERVE_TOKEN": TOKEN})[1] for _ in range(2)]
    before = httpx.get(f"{servers[0]}/api/v1/gallery").json()["items"]
    query = load_dataset("llcm", served[0]).test_split("vis2ir", 0).query
    known = {item["file"] for item in httpx.get(f"{servers[0]}/api/v1/items", params={"limit": 200}).json()["items"]}
    new = [s.path for s in query if s.path.split("/")[-1] not in known][:4]
    folder = tmp_path / "new"
    folder.mkdir()
    for path in new:
        shutil.copy(path, folder)
    adding = subprocess.Popen([sys.executable, "-m", "reid", "index", "add", "--index", milvus_server,
                               "--checkpoint", str(served[1]), "--device", "cpu", "--modality", "vis", str(folder)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    failures, sizes = [], set()

    def search_until_done(base):
        while True:
            done = adding.poll() is not None
            response = httpx.post(f"{base}/api/v1/search", files=upload(new[0]), data={"top_k": "20"}, timeout=60)
            if response.status_code != 200:
                failures.append(response.text)
            sizes.add(httpx.get(f"{base}/api/v1/gallery", timeout=60).json()["items"])
            if done:
                return

    searchers = [threading.Thread(target=search_until_done, args=(base,)) for base in servers]
    for searcher in searchers:
        searcher.start()
    for searcher in searchers:
        searcher.join(timeout=600)
    out, err = adding.communicate(timeout=60)
    assert adding.returncode == 0, err
    assert not failures, failures[:2]
    assert sizes <= {before, before + len(new)}  # Milvus inserts the command's batch at once
    for base in servers:
        assert httpx.get(f"{base}/api/v1/gallery").json()["items"] == before + len(new)
        hit = httpx.post(f"{base}/api/v1/search", files=upload(new[0]), data={"top_k": "1"}).json()
        assert hit["results"][0]["hits"][0]["file"] == new[0].split("/")[-1]
    first = httpx.post(f"{servers[1]}/api/v1/search", files=upload(new[1]), data={"top_k": "1"}).json()
    item = first["results"][0]["hits"][0]["item_id"]
    assert httpx.delete(f"{servers[1]}/api/v1/items/{item}", headers=AUTH).json()["removed"] == 1
    assert httpx.get(f"{servers[0]}/api/v1/gallery").json()["items"] == before + len(new) - 1  # the other's write
    hits = httpx.post(f"{servers[0]}/api/v1/search", files=upload(new[1]), data={"top_k": "20"}).json()
    assert item not in [hit["item_id"] for hit in hits["results"][0]["hits"]]
