import json
import os

import numpy as np
import pytest

from reid.index import GalleryError, MetadataTable


def rows(count=50, seed=0):
    rng = np.random.default_rng(seed)
    return [{"path": f"img_{i}.jpg", "pid": int(rng.integers(0, 5)) if i % 7 else None,
             "camid": int(rng.integers(1, 4)) if i % 5 else None, "modality": ["vis", "ir", None][i % 3],
             "label": "x" if i % 2 else None} for i in range(count)]


def test_filters_equal_a_row_by_row_check():
    """Items of unknown camera are from no known camera: "only these cameras" leaves them out, "not these
    cameras" keeps them (the one rule of the command line, the library and the service)."""
    table = MetadataTable.from_rows(rows())
    table.removed[[3, 8, 20]] = True
    for modality in (None, "vis", "ir"):
        for exclude in (None, {1}, {2, 3}):
            for camids in (None, [1], [2, 3], [-1]):
                expected = [not table.removed[i] and (modality is None or row["modality"] == modality)
                            and (exclude is None or row["camid"] is None or row["camid"] not in exclude)
                            and (camids is None or (row["camid"] is not None and row["camid"] in camids))
                            for i, row in enumerate(rows())]
                assert table.allowed(modality, exclude, camids).tolist() == expected, (modality, exclude, camids)


def test_an_unknown_camera_is_not_camera_zero():
    table = MetadataTable.from_rows([{"path": "a.jpg", "camid": 0}, {"path": "b.jpg", "camid": None},
                                     {"path": "c.jpg", "camid": 3}])
    assert table.allowed(exclude_camids={0}).tolist() == [False, True, True]
    assert table.allowed(camids=[0]).tolist() == [True, False, False]
    assert table.allowed(exclude_camids={3}, camids=[0, 3]).tolist() == [True, False, False]


def test_rows_round_trip_through_jsonl():
    table = MetadataTable.from_rows(rows() + [{"path": ["a/1.jpg", "a/2.jpg"], "pid": 3, "camid": 2,
                                               "modality": "ir", "label": None}])
    again = MetadataTable.from_jsonl(table.to_jsonl(), "metadata.jsonl")
    assert list(again.rows()) == list(table.rows())
    assert again.row(50)["path"] == ["a/1.jpg", "a/2.jpg"] and again.paths[50] == ("a/1.jpg", "a/2.jpg")
    assert again.row(0) == {"id": None, "path": "img_0.jpg", "pid": None, "camid": None, "modality": "vis",
                            "label": None, "timestamp": None, "removed": False}
    assert again.ids_from(7) == 58 and again.row(0)["id"] == 7 and again.row(50)["id"] == 57
    assert again.rows_of([9, 57, 99]) == {9: 2, 57: 50}


def test_paths_match_relative_or_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    table = MetadataTable.from_rows([{"path": "a.jpg"}, {"path": str(tmp_path / "b.jpg")}, {"path": ["c/1.jpg"]}])
    assert table.live_rows_with_paths([str(tmp_path / "a.jpg"), "b.jpg", os.path.join("c", "1.jpg")]).tolist() == [
        0, 1, 2]
    table.removed[0] = True
    assert table.live_rows_with_paths(["a.jpg"]).tolist() == []


def test_select_and_extend_keep_columns_aligned():
    table = MetadataTable.from_rows(rows(10))
    part = table.select(np.array([7, 2]))
    assert [r["path"] for r in part.rows()] == ["img_7.jpg", "img_2.jpg"] and part.pids.tolist() == [
        table.pids[7], table.pids[2]]
    part.extend(MetadataTable.from_rows(rows(1)))
    assert len(part) == 3 and len(part.pids) == len(part.camids) == len(part.modalities) == len(part.removed) == 3


@pytest.mark.parametrize("row, message", [
    (["img.jpg", 1], "Input should be an object"),
    ({"pid": 1}, "missing key 'path'"),
    ({"path": "a.jpg", "pid": "one"}, "pid: Input should be a valid integer"),
    ({"path": "a.jpg", "camid": True}, "camid: Input should be a valid integer"),
    ({"path": "a.jpg", "modality": "uv"}, "modality: Input should be 'vis' or 'ir'"),
    ({"path": "a.jpg", "colour": "red"}, "unknown key 'colour'"),
    ({"path": "a.jpg", "removed": "no"}, "removed: Input should be a valid boolean"),
    ({"path": []}, "path.str: Input should be a valid string .*List should have at least 1 item"),
])
def test_rows_of_the_wrong_shape_are_named(row, message):
    with pytest.raises(GalleryError, match=f"metadata.jsonl:2: {message}"):
        MetadataTable.from_jsonl(json.dumps({"path": "ok.jpg"}) + "\n" + json.dumps(row) + "\n", "metadata.jsonl")
    with pytest.raises(GalleryError, match="metadata.jsonl:1: Invalid JSON"):
        MetadataTable.from_jsonl("{nope\n", "metadata.jsonl")
