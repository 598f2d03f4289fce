import pytest
import torch

from reid.config import make_config
from reid.data import make_dataset
from reid.engine.checkpoint import save_checkpoint
from reid.models.reid_model import ReIDModel


@pytest.fixture(scope="session")
def tiny_llcm(tmp_path_factory):
    return make_dataset("llcm", tmp_path_factory.mktemp("llcm") / "LLCM", 8, seed=2)


@pytest.fixture(scope="session")
def tiny_vcm(tmp_path_factory):
    return make_dataset("vcm", tmp_path_factory.mktemp("vcm") / "VCM", 6, seed=2)


@pytest.fixture
def tiny_config(tiny_llcm, tmp_path):
    """A few seconds of CPU training: AttNet-XXS at 64x32, 4 identities x 2 per modality."""

    def config(**changes):
        values = dict(dataset="llcm", data_root=str(tiny_llcm), output_dir=str(tmp_path / "run"),
                      backbone="attnet_xxs", input_height=64, input_width=32, augment_pad=2, epochs=2, eval_every=1,
                      batch_identities=4, batch_instances=2, warmup_epochs=1, lr=1e-3, num_workers=0)
        values.update(changes)
        return make_config(values)

    return config


@pytest.fixture
def checkpoint_file(tmp_path, tiny_llcm):
    """A run checkpoint of a small AttNet (and the model), with entries replaced or (None) removed."""

    def write(**state_changes):
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

    return write
