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
    base = tmp_path_factory.mktemp("serve")
    root = make_dataset("llcm", base / "LLCM", 16, seed=4)
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


@pytest.fixture
def start_serve():
    """Start ``reid serve ARGUMENTS`` on a free loopback port and wait for its health check: returns (process,
    base URL). Servers still running at the end of the test are stopped."""
    import os
    import socket
    import subprocess
    import sys
    import time

    import httpx

    started = []

    def start(arguments, environment=None):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        process = subprocess.Popen([sys.executable, "-m", "reid", "serve", "--port", str(port), *arguments],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   env=os.environ | (environment or {}))
        started.append(process)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(f"reid serve exited: {process.communicate()[1][-2000:]}")
            try:
                if httpx.get(f"{base}/api/v1/health", timeout=2).status_code == 200:
                    return process, base
            except httpx.TransportError:
                time.sleep(0.3)
        raise AssertionError("reid serve did not answer within two minutes")

    yield start
    for process in started:
        if process.poll() is None:
            process.terminate()
            process.communicate(timeout=30)
