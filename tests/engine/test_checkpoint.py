import pytest

from reid.engine.checkpoint import RunCheckpoint
from reid.models import CheckpointError


def test_broken_checkpoints_are_one_line_errors(checkpoint_file, tmp_path):
    path, _ = checkpoint_file(config=None)
    with pytest.raises(CheckpointError, match="incomplete checkpoint, no config entry"):
        RunCheckpoint.load(path)
    path, _ = checkpoint_file(config={"dataset": "llcm", "data_root": ".", "backbone": "resnet18"})
    with pytest.raises(CheckpointError, match="do not fit the resnet18 model") as error:
        RunCheckpoint.load(path).model()
    assert "\n" not in str(error.value)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x80\x02 this is not a pickle at all" * 10)
    with pytest.raises(CheckpointError, match="not a readable checkpoint") as error:
        RunCheckpoint.load(garbage)
    assert "\n" not in str(error.value)


def test_a_config_that_does_not_validate_is_named(checkpoint_file):
    path, _ = checkpoint_file(config={"dataset": "market", "data_root": "."})
    with pytest.raises(CheckpointError, match=r"best.pt \(config\): dataset: unknown dataset; choose from llcm"):
        RunCheckpoint.load(path)
    path, _ = checkpoint_file(format="something-else/2")
    with pytest.raises(CheckpointError, match="not a reid training checkpoint"):
        RunCheckpoint.load(path)
