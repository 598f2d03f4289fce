import pytest
import torch

from reid.config import make_config
from reid.data.samples import Sample
from reid.engine.checkpoint import RunCheckpoint, save_checkpoint
from reid.engine.inference import Embedder, SampleFeatures
from reid.errors import ReidError
from reid.models import CheckpointError
from reid.models.reid_model import ReIDModel


def checkpoint_file(tmp_path, tiny_llcm, **state_changes):
    config = make_config(dict(dataset="llcm", data_root=str(tiny_llcm), backbone="attnet_xxs", input_height=64,
                              input_width=32))
    torch.manual_seed(1)
    model = ReIDModel("attnet_xxs", 5, (64, 32))
    path = save_checkpoint(tmp_path / "best.pt", model, config, 5, 3, 41.5)
    if state_changes:
        state = torch.load(path, weights_only=True)
        for key, value in state_changes.items():
            if value is None:
                del state[key]
            else:
                state[key] = value
        torch.save(state, path)
    return path, model


def test_a_checkpoint_gives_its_model_size_and_identity(tmp_path, tiny_llcm):
    path, model = checkpoint_file(tmp_path, tiny_llcm)
    checkpoint = RunCheckpoint.load(path)
    assert (checkpoint.epoch, checkpoint.best_map, checkpoint.num_classes) == (3, 41.5, 5)
    assert checkpoint.input_size == (64, 32) and checkpoint.backbone == "attnet_xxs"
    embedder = Embedder.from_checkpoint(path, num_workers=0)
    assert embedder.digest == checkpoint.digest and len(embedder.digest) == 64
    assert embedder.pipeline.config.height == 64 and embedder.num_features == model.num_features
    images = torch.randn(2, 3, 64, 32)
    with torch.no_grad():
        assert torch.equal(embedder.model(images).bn_features, model.eval()(images).bn_features)


def test_broken_checkpoints_are_one_line_errors(tmp_path, tiny_llcm):
    path, _ = checkpoint_file(tmp_path, tiny_llcm, config=None)
    with pytest.raises(CheckpointError, match="incomplete checkpoint, no config entry"):
        RunCheckpoint.load(path)
    path, _ = checkpoint_file(tmp_path, tiny_llcm, config={"dataset": "llcm", "data_root": ".",
                                                           "backbone": "resnet18"})
    with pytest.raises(CheckpointError, match="do not fit the resnet18 model") as error:
        RunCheckpoint.load(path).model()
    assert "\n" not in str(error.value)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x80\x02 this is not a pickle at all" * 10)
    with pytest.raises(CheckpointError, match="not a readable checkpoint") as error:
        RunCheckpoint.load(garbage)
    assert "\n" not in str(error.value)


def test_load_needs_exactly_one_model_source(tmp_path, tiny_llcm):
    with pytest.raises(ReidError, match="give either --checkpoint or --backbone"):
        Embedder.load(None, None)
    path, _ = checkpoint_file(tmp_path, tiny_llcm)
    with pytest.raises(ReidError, match="give either --checkpoint or --backbone"):
        Embedder.load(path, "resnet18")
    bare = Embedder.load(None, "attnet_xxs", input_size=(64, 32))
    again = Embedder.from_backbone("attnet_xxs", (64, 32))
    assert bare.digest is None and "untrained for re-ID" in bare.description
    for key, value in bare.model.state_dict().items():  # seeded: the same random network every time
        assert torch.equal(value, again.model.state_dict()[key]), key


def test_sample_features_look_up_by_sample():
    samples = [Sample(f"{i}.jpg", i, 1, "vis") for i in range(4)]
    features = SampleFeatures(samples, torch.arange(8.0).reshape(4, 2))
    assert features.of([samples[2], samples[0]]).tolist() == [[4.0, 5.0], [0.0, 1.0]]
    with pytest.raises(ReidError, match="no features for 9.jpg"):
        features.of([Sample("9.jpg", 9, 1, "vis")])
