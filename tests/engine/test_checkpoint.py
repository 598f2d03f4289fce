from pathlib import Path

import pytest
import torch

from reid.engine.checkpoint import RunCheckpoint
from reid.models import CheckpointError


def model_config(**changes):
    return {"num_classes": 5, "dataset": "llcm", "backbone": "attnet_xxs", "input_height": 64, "input_width": 32,
            **changes}


def test_broken_checkpoints_are_one_line_errors(checkpoint_file, tmp_path):
    path, _ = checkpoint_file(config=None)
    with pytest.raises(CheckpointError, match="incomplete checkpoint, no config entry"):
        RunCheckpoint.load(path)
    path, _ = checkpoint_file(model_config=model_config(backbone="resnet18"))
    with pytest.raises(CheckpointError, match="do not fit the resnet18 model") as error:
        RunCheckpoint.load(path).model()
    assert "\n" not in str(error.value)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x80\x02 this is not a pickle at all" * 10)
    with pytest.raises(CheckpointError, match="not a readable checkpoint") as error:
        RunCheckpoint.load(garbage)
    assert "\n" not in str(error.value)


def test_a_model_config_that_does_not_validate_is_named(checkpoint_file):
    path, _ = checkpoint_file(model_config=model_config(dataset="market"))
    with pytest.raises(CheckpointError, match=r"best.pt: its model config is not readable \(dataset: unknown "
                                              r"dataset; choose from llcm"):
        RunCheckpoint.load(path)
    path, _ = checkpoint_file(model_config_version=7)
    with pytest.raises(CheckpointError, match="model config version 7; this version of reid reads 1 to 1"):
        RunCheckpoint.load(path)
    path, _ = checkpoint_file(format="something-else/2")
    with pytest.raises(CheckpointError, match="not a reid training checkpoint"):
        RunCheckpoint.load(path)


FIXTURES = Path(__file__).parents[1] / "fixtures"


def test_a_checkpoint_of_the_previous_format_loads_after_its_config_key_was_renamed():
    """best-format2.pt was written by the code of the previous release (vireid-checkpoint/2, whose training config
    says triplet: weighted, since renamed metric_loss): its model is rebuilt from its config's model keys and embeds
    as it did when it was written."""
    checkpoint = RunCheckpoint.load(FIXTURES / "best-format2.pt")
    assert checkpoint.state["format"] == "vireid-checkpoint/2" and checkpoint.state["config"]["triplet"] == "weighted"
    assert checkpoint.model_config.backbone == "test_efficientnet" and checkpoint.num_classes == 4
    assert checkpoint.config.metric_loss == "weighted"  # the renamed key, read under its new name
    images = torch.randn(2, 3, 64, 32, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        embeddings = checkpoint.model()(images).embeddings
    expected = torch.load(FIXTURES / "best-format2-embeddings.pt", weights_only=True)
    torch.testing.assert_close(embeddings, expected, rtol=1e-4, atol=1e-5)  # written on another machine


def test_a_training_config_of_unknown_settings_does_not_stop_the_model_loading(checkpoint_file):
    """A checkpoint keeps its model config apart: a training setting this version does not know (renamed later,
    without a migration yet) leaves the training config unread, never the model."""
    path, model = checkpoint_file(config={"dataset": "llcm", "data_root": ".", "a_setting_of_tomorrow": 1})
    checkpoint = RunCheckpoint.load(path)
    assert checkpoint.config is None and checkpoint.model_config.backbone == "attnet_xxs"
    for key, value in model.state_dict().items():
        assert torch.equal(value, checkpoint.model().state_dict()[key]), key


def test_a_model_config_of_an_earlier_version_is_migrated(checkpoint_file, monkeypatch):
    from reid import config as config_module

    path, _ = checkpoint_file(model_config=model_config(image_height=64), model_config_version=1)
    monkeypatch.setattr(config_module.ModelConfig, "VERSION", 2)

    def rename_back(values):  # version 1 -> 2: a key renamed (as a real migration would be written)
        values["input_height"] = values.pop("image_height")
        return values

    monkeypatch.setitem(config_module.MODEL_MIGRATIONS, 1, rename_back)
    assert RunCheckpoint.load(path).model_config.input_height == 64
    state = torch.load(path, weights_only=True)
    assert state["format"] == "vireid-checkpoint/3" and state["model_config_version"] == 1
