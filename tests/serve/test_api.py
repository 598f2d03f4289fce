"""The API of ``reid serve`` through FastAPI's test client: every endpoint, every refused request, writes."""
import io
import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from reid.data import load_dataset
from reid.errors import ReidError
from reid.index import Gallery
from reid.serve.app import create_app
from reid.serve.service import GalleryService, Limits

TOKEN = "a-test-token-of-enough-length"

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def gallery(served, tmp_path):
    """A copy of the served gallery that a test may change."""
    shutil.copytree(served[2], tmp_path / "gallery")
    return tmp_path / "gallery"


def client_for(embedder, gallery, token=TOKEN, limits=None, evaluations=(), cors=None, **options):
    service = GalleryService(embedder, gallery, evaluations=evaluations, limits=limits)
    return TestClient(create_app(service, token, cors, **options), raise_server_exceptions=False)


@pytest.fixture
def client(embedder, gallery, served):
    return client_for(embedder, gallery, evaluations=[served[3]])


def png(path_or_array) -> bytes:
    image = Image.open(path_or_array) if isinstance(path_or_array, (str, Path)) else Image.fromarray(path_or_array)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def upload(*paths):
    return [("images", (Path(path).name, png(path), "image/png")) for path in paths]


def gallery_rows(gallery):
    loaded = Gallery.load(gallery)
    return [loaded.table.row(i) for i in range(len(loaded.table)) if not loaded.table.removed[i]]


def assert_one_line_error(response, status):
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"] and "\n" not in body["error"], body
    assert "Traceback" not in response.text
    return body["error"]


# reading ---------------------------------------------------------------------------------------------------------
def test_health_and_gallery_describe_the_served_gallery(client, gallery, embedder):
    import reid

    health = client.get("/api/v1/health").json()
    assert health["status"] == "ok" and health["reid_version"] == reid.__version__
    served = (health["engine"], health["device"], health["backbone"], health["backend"])
    assert served == ("torch", "cpu", "attnet_xxs", "faiss")
    assert health["checkpoint_digest"] == embedder.digest and health["writable"] is True
    assert health["items"] == len(gallery_rows(gallery)) and health["max_batch"] == 32
    info = client.get("/api/v1/gallery").json()
    manifest = Gallery.load(gallery).manifest
    assert info["items"] == len(gallery_rows(gallery)) and info["embedding_size"] == embedder.num_features
    assert info["backbone"] == "attnet_xxs"
    assert info["checkpoint_digest"] == embedder.digest == manifest.checkpoint_digest
    assert info["index_type"] == "flat" and info["factory"] == manifest.factory
    assert set(info["by_modality"]) == {"vis", "ir"}
    assert info["cameras"] == sorted({row["camid"] for row in gallery_rows(gallery)})
    assert info["unknown_camera_items"] == 0 and info["version"] == health["gallery_version"]
    assert info["evaluations"][0]["directions"] == ["ir2vis", "vis2ir"]
    assert info["evaluations"][0]["name"] == "report.json" and info["evaluations"][0]["trial"] == 0
    assert info["evaluations"][0]["warnings"] == []  # the same model, and a dataset the gallery does not name


def test_the_openapi_description_has_a_schema_for_every_route_and_status(client):
    document = client.get("/openapi.json").json()
    paths = document["paths"]
    assert {"/api/v1/search", "/api/v1/items", "/api/v1/items/{item_id}", "/api/v1/gallery", "/api/v1/health",
            "/api/v1/items/{item_id}/image", "/api/v1/evaluations/{name}/{direction}"} <= set(paths)
    schemas = document["components"]["schemas"]
    for path, methods in paths.items():
        for method, operation in methods.items():
            for status, response in operation["responses"].items():
                content = response.get("content", {})
                assert content, (method, path, status)
                if "application/json" in content:
                    reference = content["application/json"]["schema"].get("$ref", "")
                    assert reference.startswith("#/components/schemas/"), (method, path, status)
                    name = reference.rsplit("/", 1)[1]
                    assert schemas[name].get("properties"), (method, path, status, name)
                    if status.startswith(("4", "5")):
                        assert name == "ErrorBody", (method, path, status)  # the body errors really have
                else:
                    assert "image/jpeg" in content, (method, path, status)


def test_a_gallery_image_finds_itself_first_with_everything_a_hit_carries(client, gallery):
    rows = gallery_rows(gallery)
    target = next(i for i, row in enumerate(rows) if row["modality"] == "ir")
    answer = client.post("/api/v1/search", files=upload(rows[target]["path"]), data={"top_k": "5"}).json()
    (result,) = answer["results"]
    assert len(result["hits"]) == 5 and result["query_modality"] == "ir" and result["query_pid"] is None
    first = result["hits"][0]
    assert first["item_id"] == target and first["score"] == pytest.approx(1.0, abs=1e-4) and first["rank"] == 1
    assert (first["pid"], first["camid"], first["modality"]) == (rows[target]["pid"], rows[target]["camid"], "ir")
    assert first["thumbnail"] == f"/api/v1/items/{target}/thumbnail"
    assert first["image"] == f"/api/v1/items/{target}/image" and first["file"] == Path(rows[target]["path"]).name
    enlarged = Image.open(io.BytesIO(client.get(first["image"]).content))
    width, height = Image.open(rows[target]["path"]).size
    assert max(enlarged.size) == 512 and enlarged.size[0] / enlarged.size[1] == pytest.approx(width / height, rel=0.01)
    scores = [hit["score"] for hit in result["hits"]]
    assert scores == sorted(scores, reverse=True)
    thumbnail = client.get(first["thumbnail"])
    assert thumbnail.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(thumbnail.content)).size == (64, 128)


def test_several_images_get_one_ranked_list_each_in_order(client, gallery):
    rows = gallery_rows(gallery)
    picked = [0, len(rows) // 2, len(rows) - 1]
    answer = client.post("/api/v1/search", files=upload(*(rows[i]["path"] for i in picked))).json()
    assert [result["hits"][0]["item_id"] for result in answer["results"]] == picked
    assert all(len(result["hits"]) == 10 for result in answer["results"])


def test_modality_and_camera_filters_hold_for_every_hit(client, gallery):
    rows = gallery_rows(gallery)
    cameras = sorted({row["camid"] for row in rows if row["modality"] == "vis"})
    kept = cameras[:2]
    answer = client.post("/api/v1/search", data={"item_id": "0", "modality": "vis", "top_k": "100",
                                                 "cameras": [str(c) for c in kept]}).json()
    hits = answer["results"][0]["hits"]
    expected = [i for i, row in enumerate(rows) if row["modality"] == "vis" and row["camid"] in kept and i != 0]
    assert sorted(hit["item_id"] for hit in hits) == expected  # exact search: every item that passes, none else
    left_out = cameras[0]
    answer = client.post("/api/v1/search", data={"item_id": "0", "top_k": "100",
                                                 "exclude_cameras": [str(left_out)]}).json()
    hits = answer["results"][0]["hits"]
    assert hits and all(hit["camid"] != left_out for hit in hits)
    assert len(hits) == sum(row["camid"] != left_out for i, row in enumerate(rows) if i != 0)


def test_an_item_of_unknown_camera_is_in_no_camera_list_and_excluded_by_no_exclusion(client, gallery, served):
    """The one camera rule of the library, the command line and the service: an upload without a camera is kept
    by "not these cameras" and left out by "only these cameras"."""
    query = load_dataset("llcm", served[0]).test_split("vis2ir", 0).query[0]
    added = client.post("/api/v1/items", files=upload(query.path), data={"modality": "vis"}, headers=AUTH).json()
    (item,) = added["item_ids"]
    assert client.get("/api/v1/gallery").json()["unknown_camera_items"] == 1
    camera = client.get("/api/v1/gallery").json()["cameras"][0]
    kept = client.post("/api/v1/search", files=upload(query.path), data={"top_k": "100", "exclude_cameras":
                                                                          [str(camera)]}).json()
    assert item in [hit["item_id"] for hit in kept["results"][0]["hits"]]
    only = client.post("/api/v1/search", files=upload(query.path), data={"top_k": "100", "cameras": [str(camera)]})
    assert item not in [hit["item_id"] for hit in only.json()["results"][0]["hits"]]
    assert [hit["camid"] for hit in kept["results"][0]["hits"] if hit["item_id"] == item] == [None]


def test_a_search_with_an_item_knows_its_identity_and_never_returns_the_item(client, gallery):
    rows = gallery_rows(gallery)
    result = client.post("/api/v1/search", data={"item_id": "3", "top_k": "100"}).json()["results"][0]
    assert result["query_pid"] == rows[3]["pid"] and result["query"] == "item 3"
    assert 3 not in [hit["item_id"] for hit in result["hits"]] and len(result["hits"]) == len(rows) - 1
    same_side = {i for i, row in enumerate(rows) if row["pid"] == rows[3]["pid"]
                 and row["modality"] == rows[3]["modality"]}
    assert len(same_side) > 1  # the identity has other images on the item's side
    skipped = client.post("/api/v1/search", data={"item_id": "3", "top_k": "100", "exclude_identity": "true"})
    ids = [hit["item_id"] for hit in skipped.json()["results"][0]["hits"]]
    assert not same_side & set(ids) and len(ids) == len(rows) - len(same_side)
    top = client.post("/api/v1/search", data={"item_id": "3", "top_k": "5"}).json()["results"][0]["hits"]
    assert len(top) == 5 and [hit["rank"] for hit in top] == [1, 2, 3, 4, 5]  # still k, the item left out


def test_a_score_threshold_leaves_out_weak_hits_and_can_leave_none(client, gallery):
    hits = client.post("/api/v1/search", data={"item_id": "3", "top_k": "20"}).json()["results"][0]["hits"]
    threshold = hits[4]["score"]
    kept = client.post("/api/v1/search", data={"item_id": "3", "top_k": "20", "min_score": str(threshold)})
    assert [hit["item_id"] for hit in kept.json()["results"][0]["hits"]] == [h["item_id"] for h in hits[:5]]
    none = client.post("/api/v1/search", data={"item_id": "3", "min_score": "1"}).json()
    assert none["results"][0]["hits"] == []  # no match


def test_the_gallery_can_be_browsed_a_page_at_a_time(client, gallery):
    rows = gallery_rows(gallery)
    first = client.get("/api/v1/items", params={"limit": 5}).json()
    second = client.get("/api/v1/items", params={"limit": 5, "offset": 5}).json()
    assert first["total"] == len(rows) and [item["item_id"] for item in first["items"] + second["items"]] == \
        [row["id"] for row in rows[:10]]
    infrared = client.get("/api/v1/items", params={"modality": "ir", "limit": 200}).json()
    assert infrared["total"] == sum(row["modality"] == "ir" for row in rows)
    assert {item["modality"] for item in infrared["items"]} == {"ir"}
    camera = rows[0]["camid"]
    assert all(item["camid"] == camera for item in client.get("/api/v1/items", params={"camera": camera}).json()[
        "items"])
    assert "more than the 200 items a page may hold" in assert_one_line_error(
        client.get("/api/v1/items", params={"limit": 500}), 422)


def test_the_evaluation_view_lists_queries_worst_first_with_their_pictures(client, served):
    report = json.loads(served[3].read_text())
    answer = client.get("/api/v1/evaluations/report.json/ir2vis").json()
    assert answer["name"] == "report.json" and answer["trial"] == 0 and answer["warnings"] == []
    assert answer["summary"]["mAP"] == pytest.approx(report["results"]["ir2vis"]["mAP"])
    queries = answer["queries"]
    assert len(queries) == len(report["queries"]["ir2vis"])
    aps = [q["ap"] for q in queries if q["ap"] is not None]
    assert aps == sorted(aps) and all(0 < len(q["top"]) <= 10 for q in queries)
    worst = queries[0]
    assert worst["ap"] == min(aps)
    recorded = report["queries"]["ir2vis"][worst["query"]]
    assert [item["pid"] for item in worst["top"]] == [item["pid"] for item in recorded["top"]]
    assert any(item["match"] for item in worst["top"]) == (worst["first_match"] is not None
                                                           and worst["first_match"] <= len(worst["top"]))
    for rank in (0, 1, len(worst["top"])):
        picture = client.get(f"/api/v1/evaluations/report.json/ir2vis/{worst['query']}/thumbnail",
                             params={"rank": rank})
        assert picture.status_code == 200 and picture.headers["content-type"] == "image/jpeg"



def test_a_failed_querys_first_true_match_is_shown_at_its_rank(embedder, gallery, served, tmp_path, monkeypatch):
    """A query whose first true match is below its top-10 (here: a model whose embeddings are noise) shows that
    match, with its rank, beside its top-10."""
    import dataclasses

    import torch

    from reid.engine.evaluate import evaluate_dataset

    noisy = dataclasses.replace(embedder)
    generator = torch.Generator().manual_seed(0)
    monkeypatch.setattr(noisy, "embed", lambda samples, progress=None: torch.randn(len(samples), 8,
                                                                                   generator=generator))
    report = evaluate_dataset(noisy, load_dataset("llcm", served[0]), trials=1, per_query=True).report
    report.save_json(tmp_path / "noise.json")
    client = client_for(embedder, gallery, evaluations=[tmp_path / "noise.json"])
    queries = client.get("/api/v1/evaluations/noise.json/ir2vis").json()["queries"]
    failed = [q for q in queries if q["first_match"] is not None and q["first_match_item"]["rank"] > len(q["top"])]
    assert failed, "noise leaves some first true matches below the top-10"
    item = failed[0]["first_match_item"]
    assert item["match"] and item["pid"] == failed[0]["pid"]
    # its place in the ranked list; the protocol's CMC rank counts identities once (LLCM's de-duplicated CMC)
    assert item["rank"] >= failed[0]["first_match"]
    assert not any(top["match"] for top in failed[0]["top"])  # none of the top-10 is a true match
    picture = client.get(f"/api/v1/evaluations/noise.json/ir2vis/{failed[0]['query']}/thumbnail",
                         params={"rank": item["rank"]})
    assert picture.status_code == 200 and picture.headers["content-type"] == "image/jpeg"


def test_a_report_of_another_model_or_dataset_is_shown_with_a_warning(embedder, gallery, served, tmp_path):
    report = json.loads(served[3].read_text())
    report["model"]["digest"] = "0" * 64
    report["dataset"] = "sysu"
    other = tmp_path / "other.json"
    other.write_text(json.dumps(report))
    Gallery.load(gallery).save(gallery)  # unchanged: it does not name its dataset, so only the model differs
    client = client_for(embedder, gallery, evaluations=[served[3], other, other])
    names = [e["name"] for e in client.get("/api/v1/gallery").json()["evaluations"]]
    assert names == ["report.json", "other.json", "other.json-2"]  # addressed by name, duplicates numbered
    view = client.get("/api/v1/evaluations/other.json/vis2ir").json()
    assert len(view["warnings"]) == 1 and "another model (checkpoint 000000000000)" in view["warnings"][0]
    loaded = Gallery.load(gallery)
    loaded.manifest.extra["dataset"] = "llcm"
    loaded.save(gallery)
    view = client_for(embedder, gallery, evaluations=[other]).get("/api/v1/evaluations/other.json/vis2ir").json()
    assert any("evaluated sysu, the gallery holds llcm" in warning for warning in view["warnings"])


def test_a_report_without_query_records_is_refused_at_start(embedder, gallery, tmp_path):
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"dataset": "LLCM", "results": {}}))
    with pytest.raises(ReidError, match=r"old.json: no per-query records; write the report again"):
        GalleryService(embedder, gallery, evaluations=[old])


def test_the_page_and_its_files_are_served_without_anything_from_elsewhere(client):
    page = client.get("/")
    assert page.status_code == 200 and "reid serve" in page.text
    for name in ("app.js", "style.css"):
        assert client.get(f"/static/{name}").status_code == 200
    text = page.text + client.get("/static/app.js").text + client.get("/static/style.css").text
    assert "http://" not in text and "https://" not in text  # no CDN: the page works on an offline network


# refused requests ------------------------------------------------------------------------------------------------
def test_every_bad_search_is_a_4xx_with_one_line(client, gallery):
    rows = gallery_rows(gallery)
    image = upload(rows[0]["path"])
    cases = [
        (dict(files=[("images", ("notes.txt", b"not an image at all", "text/plain"))]), 400, "notes.txt: not an image"),
        (dict(files=[("images", ("cut.png", png(rows[0]["path"])[:60], "image/png"))]), 400, "cut.png: not an image"),
        (dict(files=image, data={"cameras": ["99"]}), 422, "camera 99 is not in the gallery"),
        (dict(files=image, data={"exclude_cameras": ["77"]}), 422, "camera 77 is not in the gallery"),
        (dict(files=image, data={"top_k": "0"}), 422, "top_k"),
        (dict(files=image, data={"top_k": "101"}), 422, "top_k"),
        (dict(files=image, data={"top_k": "ten"}), 422, "top_k"),
        (dict(files=image, data={"modality": "thermal"}), 422, "modality"),
        (dict(data={"top_k": "5"}), 422, "give query images"),
        (dict(files=image, data={"item_id": "0"}), 422, "give query images"),
        (dict(data={"item_id": "100000"}), 404, "no item 100000"),
        (dict(data={"item_id": str(2 ** 70)}), 422, "item_id"),
        (dict(files=image, data={"min_score": "2"}), 422, "min_score"),
        (dict(files=upload(*[rows[0]["path"]] * 33)), 413, "33 images is more than the 32"),
    ]
    for request, status, message in cases:
        error = assert_one_line_error(client.post("/api/v1/search", **request), status)
        assert message in error, (request.get("data"), error)


def test_uploads_over_the_size_or_pixel_limits_are_refused_before_decoding(embedder, gallery):
    client = client_for(embedder, gallery, limits=Limits(max_bytes=20_000, max_pixels=200_000))
    noise = np.random.default_rng(0).integers(0, 256, (200, 200, 3), dtype=np.uint8)
    big = [("images", ("big.png", png(noise), "image/png"))]
    assert "big.png: more than the 20,000 bytes" in assert_one_line_error(client.post("/api/v1/search", files=big),
                                                                          413)
    bomb = io.BytesIO()
    Image.new("1", (5000, 5000)).save(bomb, format="PNG")  # a few kB that would decode to 25 million pixels
    assert len(bomb.getvalue()) < 20_000
    error = assert_one_line_error(client.post("/api/v1/search", files=[("images", ("bomb.png", bomb.getvalue()))]),
                                  413)
    assert "bomb.png: 5000x5000 is more than the 200,000 pixels" in error


def test_pillows_own_bomb_guard_is_a_413_too(embedder, gallery):
    client = client_for(embedder, gallery, limits=Limits(max_pixels=10 ** 12))
    bomb = io.BytesIO()
    Image.new("1", (14000, 14000)).save(bomb, format="PNG")  # over twice Pillow's own limit
    error = assert_one_line_error(client.post("/api/v1/search", files=[("images", ("b.png", bomb.getvalue()))]), 413)
    assert error.startswith("b.png: more than")


def test_missing_unknown_items_and_evaluations_are_404s(client):
    for path, message in (("/api/v1/items/5000/thumbnail", "no item 5000"),
                          ("/api/v1/items/5000/image", "no item 5000"),
                          ("/api/v1/evaluations/3/ir2vis", "no evaluation '3'"),
                          ("/api/v1/evaluations/report.json/sideways", "no 'sideways' search"),
                          ("/api/v1/evaluations/report.json/ir2vis/100000/thumbnail", "queries, not 100001"),
                          ("/api/v1/nowhere", "Not Found")):
        assert message in assert_one_line_error(client.get(path), 404)
    assert "rank must be 0" in assert_one_line_error(
        client.get("/api/v1/evaluations/report.json/ir2vis/0/thumbnail", params={"rank": 9999}), 404)
    assert_one_line_error(client.get("/api/v1/evaluations/report.json/ir2vis/0/thumbnail", params={"rank": -1}), 404)
    assert_one_line_error(client.get("/api/v1/items/-1/thumbnail"), 404)
    assert_one_line_error(client.get("/api/v1/items/x/thumbnail"), 422)
    assert_one_line_error(client.get(f"/api/v1/items/{2 ** 70}/thumbnail"), 422)


def test_no_request_names_a_file(client):
    """Thumbnails are served by id; a path in the URL is just an unknown route."""
    for attempt in ("/api/v1/items/..%2F..%2Fetc%2Fpasswd/thumbnail", "/static/../../pyproject.toml",
                    "/api/v1/evaluations/report.json/ir2vis/0/thumbnail?rank=0&path=/etc/passwd"):
        response = client.get(attempt)
        assert response.status_code < 500 and b"root:" not in response.content and b"[project]" not in response.content


# writing ---------------------------------------------------------------------------------------------------------
def test_writes_need_the_token_and_a_server_without_one_is_read_only(embedder, gallery, served):
    rows = gallery_rows(gallery)
    client = client_for(embedder, gallery)
    image = upload(rows[0]["path"])
    assert "bearer token" in assert_one_line_error(client.post("/api/v1/items", files=image), 401)
    assert_one_line_error(client.post("/api/v1/items", files=image, headers={"Authorization": "Bearer wrong"}), 401)
    assert_one_line_error(client.delete("/api/v1/items/0", headers={"Authorization": TOKEN}), 401)  # no "Bearer"
    read_only = client_for(embedder, gallery, token=None)
    assert "read-only" in assert_one_line_error(read_only.post("/api/v1/items", files=image, headers=AUTH), 403)
    assert "read-only" in assert_one_line_error(read_only.delete("/api/v1/items/0", headers=AUTH), 403)
    assert len(gallery_rows(gallery)) == len(rows)


def test_numbers_beyond_64_bits_are_4xx_never_500(client, gallery):
    rows = gallery_rows(gallery)
    for field in ("pid", "camid"):
        for value in (str(2 ** 70), "-1", "1e400", "x"):
            response = client.post("/api/v1/items", files=upload(rows[0]["path"]), data={field: value}, headers=AUTH)
            assert field in assert_one_line_error(response, 422), (field, value)
    assert len(gallery_rows(gallery)) == len(rows)


def test_a_body_over_the_limit_is_refused_from_its_headers_before_it_is_read(embedder, gallery):
    """The 413 comes from Content-Length alone (it says 200 MB; a kilobyte is sent), and a body without one is cut
    off as soon as it passes the limit."""
    client = client_for(embedder, gallery, limits=Limits(max_bytes=1000, max_images=2))
    limit = Limits(max_bytes=1000, max_images=2).max_body
    response = client.post("/api/v1/search", content=b"x" * 1024, headers={
        "Content-Length": str(200 * 2 ** 20), "Content-Type": "multipart/form-data; boundary=b"})
    assert f"more than the {limit:,} bytes" in assert_one_line_error(response, 413)
    streamed = client.post("/api/v1/search", content=iter([b"y" * 65536] * 100),  # no Content-Length: chunked
                           headers={"Content-Type": "multipart/form-data; boundary=b"})
    assert_one_line_error(streamed, 413)


def test_faults_of_the_server_are_5xx_with_the_whole_message(embedder, gallery, monkeypatch):
    rows = gallery_rows(gallery)
    client = client_for(embedder, gallery)
    vanished = Path(rows[2]["path"])
    moved = vanished.with_suffix(".moved")
    vanished.rename(moved)
    try:
        error = assert_one_line_error(client.get(f"/api/v1/items/{rows[2]['id']}/thumbnail"), 503)
        assert str(vanished) in error
    finally:
        moved.rename(vanished)

    def broken(images, infrared):
        raise RuntimeError("the model failed\nwith a second line")

    monkeypatch.setattr(embedder, "embed_images", broken)
    error = assert_one_line_error(client.post("/api/v1/search", data={"item_id": "1"}), 500)
    assert error == "the server failed: RuntimeError: the model failed with a second line"
    monkeypatch.undo()
    corrupt = gallery.with_name("corrupt")  # a gallery swapped in whole, as a save swaps it, with a broken index
    shutil.copytree(gallery, corrupt)
    (corrupt / "index.faiss").write_bytes(b"not an index")
    gallery.rename(gallery.with_name("before"))
    corrupt.rename(gallery)
    error = assert_one_line_error(client.get("/api/v1/gallery"), 503)
    assert "index.faiss" in error and "does not match its manifest" in error


def test_the_page_has_a_favicon_and_an_api_page_that_works_offline(client):
    assert client.get("/favicon.ico").headers["content-type"].startswith("image/svg+xml")
    docs = client.get("/docs")
    assert docs.status_code == 200 and "/docs-files/swagger-ui-bundle.js" in docs.text
    assert "http://" not in docs.text.replace("http://www.w3.org", "") and "https://" not in docs.text
    assert client.get("/docs-files/swagger-ui-bundle.js").status_code == 200
    assert client.get("/docs-files/swagger-ui.css").status_code == 200


def test_an_added_image_is_on_disk_and_found_at_once(client, gallery, served, tmp_path):
    before, old_version = (client.get("/api/v1/gallery").json()[key] for key in ("items", "version"))
    root = served[0]
    query = load_dataset("llcm", root).test_split("ir2vis", 0).query
    new = next(s for s in query if s.path not in {row["path"] for row in gallery_rows(gallery)})
    data = {"pid": "4242", "camid": str(new.camid), "modality": "ir"}
    added = client.post("/api/v1/items", files=upload(new.path), data=data, headers=AUTH).json()
    assert added["added"] == 1 and added["items"] == before + 1
    (item,) = added["item_ids"]
    on_disk = Gallery.load(gallery)
    assert on_disk.live_count == before + 1 and on_disk.table.row(item)["pid"] == 4242
    stored = Path(on_disk.table.row(item)["path"])
    assert stored.parent == gallery.with_name("gallery.uploads") and stored.read_bytes() == png(new.path)
    answer = client.post("/api/v1/search", files=upload(new.path), data={"top_k": "1"}).json()
    hit = answer["results"][0]["hits"][0]
    assert (hit["item_id"], hit["pid"], hit["modality"]) == (item, 4242, "ir")
    assert answer["version"] != old_version and answer["version"] == client.get("/api/v1/gallery").json()["version"]
    again = client.post("/api/v1/items", files=upload(new.path), data=data, headers=AUTH).json()
    assert again["added"] == 0 and again["items"] == before + 1  # the same content is one item


def test_a_removed_item_is_never_returned_again(client, gallery):
    rows = gallery_rows(gallery)
    assert client.delete("/api/v1/items/2", headers=AUTH).json()["removed"] == 1
    hits = client.post("/api/v1/search", files=upload(rows[2]["path"]), data={"top_k": "100"}).json()
    assert 2 not in [hit["item_id"] for hit in hits["results"][0]["hits"]]
    assert "item 2 was removed" in assert_one_line_error(client.delete("/api/v1/items/2", headers=AUTH), 409)
    assert "no item 1000000" in assert_one_line_error(client.delete("/api/v1/items/1000000", headers=AUTH), 404)
    assert len(gallery_rows(gallery)) == len(rows) - 1


def test_ids_survive_a_compaction_by_another_process_and_a_stale_id_is_refused(client, gallery):
    """Compacting renumbers the index's rows, never the items' ids: a client's id still names its item, and the id
    of a removed item is refused (409), never given to another item."""
    rows = gallery_rows(gallery)
    version = client.get("/api/v1/gallery").json()["version"]
    assert client.delete(f"/api/v1/items/{rows[4]['id']}", headers=AUTH).json()["removed"] == 1
    removed_version = client.get("/api/v1/gallery").json()["version"]
    compacted = Gallery.load(gallery).compact()
    compacted.save(gallery)  # as `reid index compact` in another process does
    after = client.get("/api/v1/gallery").json()["version"]
    assert len({version, removed_version, after}) == 3  # every save is a new version
    assert "was removed" in assert_one_line_error(client.delete(f"/api/v1/items/{rows[4]['id']}", headers=AUTH),
                                                  409)
    assert client.delete(f"/api/v1/items/{rows[5]['id']}", headers=AUTH).json()["removed"] == 1
    remaining = {row["path"] for row in gallery_rows(gallery)}
    assert rows[5]["path"] not in remaining and rows[6]["path"] in remaining  # the item it named, no other
    added = client.post("/api/v1/items", files=upload(rows[4]["path"]), headers=AUTH).json()
    assert added["item_ids"][0] > max(row["id"] for row in rows)  # a new id, never a reused one


def test_a_cli_add_while_the_service_answers_is_picked_up_without_a_restart(client, gallery, served, tmp_path):
    """``reid index add`` in another process, under the gallery lock, while searches run: every search answers
    from a whole gallery (the old or the new), and the next one sees the new items."""
    before = client.get("/api/v1/gallery").json()["items"]
    query = load_dataset("llcm", served[0]).test_split("vis2ir", 0).query
    known = {row["path"] for row in gallery_rows(gallery)}
    new = [s.path for s in query if s.path not in known][:6]
    folder = tmp_path / "new"
    folder.mkdir()
    for path in new:
        shutil.copy(path, folder)
    command = [sys.executable, "-m", "reid", "index", "add", "--index", str(gallery), "--checkpoint", str(served[1]),
               "--device", "cpu", "--modality", "vis", str(folder)]
    adding = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sizes, failures = set(), []

    def search_until_done():
        probe = upload(new[0])
        while True:
            done = adding.poll() is not None
            response = client.post("/api/v1/search", files=probe, data={"top_k": "100"})
            if response.status_code != 200:
                failures.append(response.text)
            else:
                sizes.add(client.get("/api/v1/gallery").json()["items"])
            if done:
                return

    searcher = threading.Thread(target=search_until_done)
    searcher.start()
    searcher.join(timeout=300)
    out, err = adding.communicate(timeout=60)
    assert adding.returncode == 0, err
    assert not failures
    assert client.get("/api/v1/gallery").json()["items"] == before + len(new)
    assert sizes <= {before, before + len(new)}  # never a gallery in between
    hits = client.post("/api/v1/search", files=upload(new[0]), data={"top_k": "1"}).json()
    assert Path(hits["results"][0]["hits"][0]["thumbnail"]).name == "thumbnail"
    assert hits["results"][0]["hits"][0]["item_id"] >= before


# the surroundings ------------------------------------------------------------------------------------------------
def test_cors_is_off_unless_an_origin_is_given(embedder, gallery):
    origin = {"Origin": "https://example.org"}
    closed = client_for(embedder, gallery).get("/api/v1/health", headers=origin)
    assert "access-control-allow-origin" not in closed.headers
    opened = client_for(embedder, gallery, cors=["https://example.org"]).get("/api/v1/health", headers=origin)
    assert opened.headers["access-control-allow-origin"] == "https://example.org"
    other = client_for(embedder, gallery, cors=["https://example.org"]).get(
        "/api/v1/health", headers={"Origin": "https://elsewhere.net"})
    assert "access-control-allow-origin" not in other.headers


def test_searches_that_arrive_together_share_forward_passes(embedder, gallery, monkeypatch):
    rows = gallery_rows(gallery)
    calls = []
    original = embedder.embed_images

    def counted(images, infrared):
        calls.append(len(images))
        return original(images, infrared)

    monkeypatch.setattr(embedder, "embed_images", counted)
    answers = [None] * 6
    with client_for(embedder, gallery, max_batch=32, max_wait=0.2) as client:  # one event loop for every request

        def search(number):
            answers[number] = client.post("/api/v1/search", files=upload(rows[number]["path"]), data={"top_k": "1"})

        threads = [threading.Thread(target=search, args=(n,)) for n in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert [a.json()["results"][0]["hits"][0]["item_id"] for a in answers] == list(range(6))  # each its own answer
    assert sum(calls) == 6 and len(calls) < 6
