import pytest
import torch

from reid.data.samples import Sample
from reid.engine.checkpoint import RunCheckpoint
from reid.engine.inference import Embedder, SampleEmbeddings
from reid.errors import ReidError


def test_a_checkpoint_gives_its_model_size_and_identity(checkpoint_file):
    path, model = checkpoint_file()
    checkpoint = RunCheckpoint.load(path)
    assert (checkpoint.epoch, checkpoint.best, checkpoint.num_classes) == (3, 41.5, 5)
    assert checkpoint.input_size == (64, 32) and checkpoint.backbone == "attnet_xxs"
    embedder = Embedder.from_checkpoint(path, num_workers=0)
    assert embedder.digest == checkpoint.digest and len(embedder.digest) == 64
    assert embedder.pipeline.config.height == 64 and embedder.num_features == model.num_features
    images = torch.randn(2, 3, 64, 32)
    with torch.no_grad():
        assert torch.equal(embedder.model(images).embeddings, model.eval()(images).embeddings)


def test_load_needs_exactly_one_model_source(checkpoint_file):
    with pytest.raises(ReidError, match="give either --checkpoint or --backbone"):
        Embedder.load(None, None)
    path, _ = checkpoint_file()
    with pytest.raises(ReidError, match="give either --checkpoint or --backbone"):
        Embedder.load(path, "resnet18")
    bare = Embedder.load(None, "attnet_xxs", input_size=(64, 32))
    again = Embedder.from_backbone("attnet_xxs", (64, 32))
    assert bare.digest is None and "untrained for re-ID" in bare.description
    for key, value in bare.model.state_dict().items():  # seeded: the same random network every time
        assert torch.equal(value, again.model.state_dict()[key]), key


def test_sample_features_look_up_by_sample():
    samples = [Sample(f"{i}.jpg", i, 1, "vis") for i in range(4)]
    features = SampleEmbeddings(samples, torch.arange(8.0).reshape(4, 2))
    assert features.of([samples[2], samples[0]]).tolist() == [[4.0, 5.0], [0.0, 1.0]]
    with pytest.raises(ReidError, match="no embedding of 9.jpg"):
        features.of([Sample("9.jpg", 9, 1, "vis")])
