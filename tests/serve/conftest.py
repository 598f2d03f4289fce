"""A small model, a gallery of both modalities and the service over them, shared by the serve tests."""
import pytest
import torch

from reid.config import make_config
from reid.data import load_dataset, make_dataset
from reid.engine.checkpoint import save_checkpoint
from reid.engine.evaluate import evaluate_dataset
from reid.engine.galleries import build_gallery
from reid.engine.inference import Embedder
from reid.models.reid_model import ReIDModel

pytest.importorskip("fastapi", reason="the serve extra is part of dev")


@pytest.fixture(scope="session")
def served(tmp_path_factory):
    """(dataset root, checkpoint, gallery directory, evaluation report) of a random AttNet-XXS at 64x32."""
    torch.set_num_threads(2)
    base = tmp_path_factory.mktemp("serve")
    root = make_dataset("llcm", base / "LLCM", 8, seed=4)
    config = make_config(dict(dataset="llcm", data_root=str(root), backbone="attnet_xxs", input_height=64,
                              input_width=32))
    torch.manual_seed(3)
    checkpoint = save_checkpoint(base / "best.pt", ReIDModel("attnet_xxs", 8, (64, 32)), config, 8, 1, None)
    embedder = Embedder.from_checkpoint(checkpoint)
    dataset = load_dataset("llcm", root)
    samples = dataset.test_split("ir2vis", 0).gallery + dataset.test_split("vis2ir", 0).gallery
    build_gallery(embedder, list(dict.fromkeys(samples))).save(base / "gallery")
    report = evaluate_dataset(embedder, dataset, trials=1, per_query=True).report
    report.save_json(base / "report.json")
    return root, checkpoint, base / "gallery", base / "report.json"


@pytest.fixture(scope="session")
def embedder(served):
    return Embedder.from_checkpoint(served[1])
