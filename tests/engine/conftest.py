import pytest
import torch

from reid.config import make_config
from reid.data import make_dataset


@pytest.fixture(scope="session")
def tiny_llcm(tmp_path_factory):
    return make_dataset("llcm", tmp_path_factory.mktemp("llcm") / "LLCM", 8, seed=2)


@pytest.fixture(scope="session")
def tiny_vcm(tmp_path_factory):
    return make_dataset("vcm", tmp_path_factory.mktemp("vcm") / "VCM", 6, seed=2)


@pytest.fixture
def tiny_config(tiny_llcm, tmp_path):
    """A few seconds of CPU training: AttNet-XXS at 64x32, 4 identities x 2 per modality."""
    torch.set_num_threads(2)

    def config(**changes):
        values = dict(dataset="llcm", data_root=str(tiny_llcm), output_dir=str(tmp_path / "run"),
                      backbone="attnet_xxs", input_height=64, input_width=32, augment_pad=2, epochs=2, eval_every=1,
                      batch_identities=4, batch_instances=2, warmup_epochs=1, lr=1e-3, num_workers=0)
        values.update(changes)
        return make_config(values)

    return config
