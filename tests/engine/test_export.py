import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from cli import app
from reid.engine.checkpoint import RunCheckpoint
from reid.engine.export import export_onnx
from reid.engine.inference import Embedder
from reid.errors import ReidError

pytestmark = pytest.mark.slow
runner = CliRunner()


def test_onnx_export_has_a_dynamic_batch_and_matches_pytorch(checkpoint_file, tmp_path):
    path, _ = checkpoint_file()
    result = runner.invoke(app, ["export", "--checkpoint", str(path), "--format", "onnx", "--out",
                                 str(tmp_path / "model.onnx")])
    assert result.exit_code == 0, result.output
    assert "onnxruntime vs PyTorch: max difference" in result.stdout
    import onnxruntime

    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"))
    embedder = Embedder.from_checkpoint(path)
    for batch in (1, 4):
        images = torch.randn(batch, 3, 64, 32)
        embeddings = session.run(None, {"images": images.numpy()})[0]
        assert embeddings.shape == (batch, embedder.num_features)
        np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, rtol=1e-5)
        with torch.no_grad():
            expected = torch.nn.functional.normalize(embedder.model(images).bn_features, dim=1).numpy()
        np.testing.assert_allclose(embeddings, expected, atol=1e-4)
    assert RunCheckpoint.load(path).model().training is False  # the export left no state behind


@pytest.mark.parametrize("backbone", ["acmix_swin_tiny_patch4_window7_224", "atconv_swin_tiny", "atconv_pvt_v2_b1"])
def test_every_backbone_family_exports_with_a_dynamic_batch(backbone, tiny_llcm, tmp_path):
    from reid.config import make_config
    from reid.engine.checkpoint import save_checkpoint
    from reid.models.reid_model import ReIDModel

    config = make_config(dict(dataset="llcm", data_root=str(tiny_llcm), backbone=backbone, input_height=64,
                              input_width=32))
    torch.manual_seed(0)
    model = ReIDModel(backbone, 5, (64, 32)).eval()
    path = save_checkpoint(tmp_path / "best.pt", model, config, 5, 1, None)
    assert export_onnx(RunCheckpoint.load(path), tmp_path / "model.onnx").max_difference < 1e-4
    import onnxruntime

    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"))
    images = torch.randn(3, 3, 64, 32)  # not the batch it was traced with
    with torch.no_grad():
        expected = torch.nn.functional.normalize(model(images).bn_features, dim=1).numpy()
    np.testing.assert_allclose(session.run(None, {"images": images.numpy()})[0], expected, atol=1e-4)


def test_video_models_export_tracklets(checkpoint_file, tiny_llcm, tmp_path):
    config = {"dataset": "vcm", "data_root": str(tiny_llcm), "backbone": "attnet_xxs", "input_height": 64,
              "input_width": 32, "seq_len": 3}
    path, _ = checkpoint_file(config=config)
    result = export_onnx(RunCheckpoint.load(path), tmp_path / "video.onnx")
    assert result.input_shape == (2, 3, 3, 64, 32) and result.max_difference < 1e-4


def test_stem_models_are_refused_with_a_reason(checkpoint_file, tiny_llcm, tmp_path):
    from reid.config import make_config
    from reid.engine.checkpoint import save_checkpoint
    from reid.models.reid_model import ReIDModel

    config = make_config(dict(dataset="llcm", data_root=str(tiny_llcm), backbone="attnet_xxs", input_height=64,
                              input_width=32, modality_stems=True))
    path = save_checkpoint(tmp_path / "stems.pt", ReIDModel("attnet_xxs", 5, (64, 32), modality_stems=True), config,
                           5, 1, None)
    with pytest.raises(ReidError, match="modality-specific stems cannot be exported"):
        export_onnx(RunCheckpoint.load(path), tmp_path / "x.onnx")


def test_extract_writes_features_with_labels(checkpoint_file, tiny_llcm, tmp_path):
    path, _ = checkpoint_file()
    out = tmp_path / "feats.npz"
    result = runner.invoke(app, ["extract", "--checkpoint", str(path), "--dataset", "llcm", "--data-root",
                                 str(tiny_llcm), "--split", "query", "--out", str(out)])
    assert result.exit_code == 0, result.output
    archive = np.load(out)
    from reid.data import load_dataset

    query = load_dataset("llcm", tiny_llcm).test_split("ir2vis", 0).query
    assert archive["features"].shape == (len(query), 240) and archive["features"].dtype == np.float32
    assert archive["paths"].tolist() == [s.path for s in query]
    assert archive["pids"].tolist() == [s.pid for s in query] and set(archive["modalities"]) == {"ir"}
    expected = Embedder.from_checkpoint(path, num_workers=0).embeddings(query[:3])
    np.testing.assert_allclose(archive["features"][:3], expected, rtol=1e-5, atol=1e-6)

    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(np.full((20, 10, 3), 90, np.uint8)).save(folder / "a.png")
    images = runner.invoke(app, ["extract", "--checkpoint", str(path), "--images", str(folder), "--out",
                                 str(tmp_path / "i.npz")])
    assert images.exit_code == 0, images.output
    assert np.load(tmp_path / "i.npz")["pids"].tolist() == [-1]
