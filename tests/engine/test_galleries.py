import numpy as np
import pytest
import torch
from PIL import Image

from reid.data import load_dataset
from reid.data.samples import Split
from reid.data.transforms import eval_pipeline
from reid.engine.galleries import build_gallery, dataset_samples, guess_modality, image_samples
from reid.engine.inference import Embedder
from reid.errors import ReidError
from reid.index import IndexSettings
from reid.models.reid_model import ReIDModel
from reid.settings import AugmentConfig


@pytest.fixture(scope="module")
def embedder():
    torch.manual_seed(0)
    model = ReIDModel("attnet_xxs", 0, (64, 32)).eval()
    return Embedder(model, eval_pipeline(AugmentConfig(64, 32)), "attnet_xxs", "test model", digest="abc",
                    num_workers=0)


def test_dataset_splits(tiny_llcm):
    dataset = load_dataset("llcm", tiny_llcm)
    test = dataset.test_split("vis2ir", 0)
    assert dataset_samples(dataset, Split.gallery, "vis2ir") == test.gallery
    assert dataset_samples(dataset, "query", "vis2ir") == test.query
    assert dataset_samples(dataset, Split.train) == dataset.train()
    everything = dataset_samples(dataset, Split.all, "vis2ir")
    assert len(everything) == len(set(everything)) == len(set(dataset.train() + test.query + test.gallery))
    only_ir = dataset_samples(dataset, Split.train, modality="ir")
    assert only_ir and all(s.modality == "ir" for s in only_ir)


def test_a_gallery_from_samples_holds_their_labels_and_embeddings(tiny_llcm, embedder):
    dataset = load_dataset("llcm", tiny_llcm)
    samples = dataset.test_split("ir2vis", 0).gallery
    gallery = build_gallery(embedder, samples, IndexSettings(type="flat"))
    assert gallery.manifest.backbone == "attnet_xxs" and gallery.manifest.checkpoint_digest == "abc"
    assert [(r["pid"], r["camid"], r["modality"]) for r in gallery.table.rows()] == [
        (s.pid, s.camid, s.modality) for s in samples]
    embeddings = embedder.embeddings(samples[:3])
    hits = gallery.search(embeddings, 1)
    assert [h[0].path for h in hits] == [s.path for s in samples[:3]]  # each item finds itself
    assert hits[0][0].score == pytest.approx(1.0, abs=1e-5)
    assert hits[0][0].sample() == samples[0]


def test_image_samples_and_modality_guess(tmp_path):
    folder = tmp_path / "imgs"
    (folder / "sub").mkdir(parents=True)
    Image.fromarray(np.full((8, 4, 3), [10, 200, 30], np.uint8)).save(folder / "b.png")
    Image.fromarray(np.full((8, 4), 90, np.uint8)).save(folder / "sub/a.jpg")
    (folder / "notes.txt").write_text("not an image")
    samples = image_samples([folder])
    assert [s.path for s in samples] == [str(folder / "b.png"), str(folder / "sub/a.jpg")]
    assert [s.modality for s in samples] == ["vis", "ir"] and all(s.pid == -1 for s in samples)
    assert guess_modality(folder / "sub/a.jpg") == "ir"
    assert image_samples([folder / "b.png"], "ir")[0].modality == "ir"
    with pytest.raises(ReidError, match="no such image or folder"):
        image_samples([tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReidError, match="no images"):
        image_samples([tmp_path / "empty"])
