"""Index types: one registry entry each, what they build, and the settings a manifest may hold."""
import faiss
import numpy as np
import pytest

from reid.index import INDEX_TYPES, GalleryError, IndexSettings
from reid.index.factory import build_index, normalised


def test_the_default_type_is_exact_and_every_type_describes_itself():
    assert IndexSettings().type == "flat" and INDEX_TYPES["flat"].exact  # a gallery is exact unless asked
    for name, kind in INDEX_TYPES.items():
        assert kind.name == name and kind.summary and kind.stored in ("full", "8-bit"), name
        assert not (kind.exact and kind.stored != "full"), name  # exact search needs the full vectors


def test_the_readme_table_of_index_types_is_the_generated_one():
    from pathlib import Path

    from reid.index.gallery import EXHAUSTIVE_LIMIT
    from reid.index.settings import index_reference

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    table = readme.split("<!-- index-types -->\n", 1)[1].split("\n<!-- /index-types -->", 1)[0]
    assert table == index_reference(EXHAUSTIVE_LIMIT), "paste reid.index.settings.index_reference into README.md"


@pytest.mark.parametrize("kind", INDEX_TYPES)
def test_each_type_builds_the_faiss_class_its_entry_names(kind):
    vectors = normalised(np.random.default_rng(0).standard_normal((10_000, 32)))
    settings = IndexSettings(type=kind, nlist=8, pq_m=8).resolved(len(vectors), 32)
    index = build_index(vectors, settings)
    assert isinstance(faiss.downcast_index(index), getattr(faiss, INDEX_TYPES[kind].faiss_class))
    assert index.is_trained and index.d == 32


def test_the_data_decides_what_is_left_open():
    ivfpq = IndexSettings(type="ivfpq").resolved(10_000, 64)
    assert (ivfpq.nlist, ivfpq.pq_m, ivfpq.factory_string()) == (100, 16, "IVF100,PQ16x8,Refine(SQ8)")
    assert ivfpq.minimum_training_vectors() == 39 * 256 and ivfpq.training_sample_size() == 64 * 256
    ivfflat = IndexSettings(type="ivfflat").resolved(10_000, 64)
    assert ivfflat.factory_string() == "IVF100,Flat" and ivfflat.minimum_training_vectors() == 3900
    assert IndexSettings(type="hnsw", hnsw_m=16).resolved(5, 8).factory_string() == "HNSW16,Flat"
    with pytest.raises(GalleryError, match="pq_m=7 must divide the embedding size 64"):
        IndexSettings(type="ivfpq", pq_m=7).resolved(10_000, 64)


@pytest.mark.parametrize("values, message", [
    ({"type": "annoy"}, f"type: unknown index type 'annoy'; choose from {', '.join(INDEX_TYPES)}"),
    ({"type": "flat", "colour": "red"}, "unknown key 'colour'"),
    ({"type": "hnsw", "ef_search": 0}, "ef_search: Input should be greater than or equal to 1"),
    ({"type": "ivfpq", "nprobe": True}, "nprobe: Input should be a valid integer"),
    ([1, 2], "Input should be a valid dictionary"),
])
def test_manifest_settings_of_the_wrong_shape_are_named(values, message):
    with pytest.raises(GalleryError, match=f"manifest.json: index settings: {message}"):
        IndexSettings.from_dict(values, "manifest.json")
