import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from reid.cli import app
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
    assert "TracerWarning" not in result.output
    import onnx
    import onnxruntime

    metadata = {entry.key: entry.value for entry in onnx.load(str(tmp_path / "model.onnx")).metadata_props}
    assert metadata == {"input_height": "64", "input_width": "32", "resize": "bilinear", "channel_order": "RGB",
                        "pixel_scale": "255", "mean": "[0.485, 0.456, 0.406]", "std": "[0.229, 0.224, 0.225]",
                        "layout": "NCHW", "output": "L2-normalised embeddings", "backbone": "attnet_xxs",
                        "checkpoint_digest": RunCheckpoint.load(path).digest}

    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"))
    embedder = Embedder.from_checkpoint(path)
    for batch in (1, 4):
        images = torch.randn(batch, 3, 64, 32)
        embeddings = session.run(None, {"images": images.numpy()})[0]
        assert embeddings.shape == (batch, embedder.num_features)
        np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, rtol=1e-5)
        with torch.no_grad():
            expected = torch.nn.functional.normalize(embedder.model(images).embeddings, dim=1).numpy()
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
    assert export_onnx(Embedder.from_checkpoint(path), tmp_path / "model.onnx").max_difference < 1e-4
    import onnxruntime

    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"))
    images = torch.randn(3, 3, 64, 32)  # not the batch it was traced with
    with torch.no_grad():
        expected = torch.nn.functional.normalize(model(images).embeddings, dim=1).numpy()
    np.testing.assert_allclose(session.run(None, {"images": images.numpy()})[0], expected, atol=1e-4)


def test_video_models_export_tracklets(tiny_llcm, tmp_path):
    config = {"dataset": "vcm", "data_root": str(tiny_llcm), "backbone": "attnet_xxs", "input_height": 64,
              "input_width": 32, "seq_len": 3}
    from reid.config import make_config
    from reid.engine.checkpoint import save_checkpoint
    from reid.models.reid_model import ReIDModel

    path = save_checkpoint(tmp_path / "video.pt", ReIDModel("attnet_xxs", 5, (64, 32)), make_config(config), 5, 1,
                           None)
    result = export_onnx(Embedder.from_checkpoint(path), tmp_path / "video.onnx")
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
        export_onnx(Embedder.from_checkpoint(path), tmp_path / "x.onnx")


def test_extract_writes_embeddings_with_labels(checkpoint_file, tiny_llcm, tmp_path):
    path, _ = checkpoint_file()
    out = tmp_path / "feats.npz"
    result = runner.invoke(app, ["extract", "--checkpoint", str(path), "--dataset", "llcm", "--data-root",
                                 str(tiny_llcm), "--split", "query", "--out", str(out)])
    assert result.exit_code == 0, result.output
    archive = np.load(out)
    from reid.data import load_dataset

    query = load_dataset("llcm", tiny_llcm).test_split("ir2vis", 0).query
    assert archive["embeddings"].shape == (len(query), 240) and archive["embeddings"].dtype == np.float32
    assert archive["paths"].tolist() == [s.path for s in query]
    assert archive["pids"].tolist() == [s.pid for s in query] and set(archive["modalities"]) == {"ir"}
    expected = Embedder.from_checkpoint(path, num_workers=0).embeddings(query[:3])
    np.testing.assert_allclose(archive["embeddings"][:3], expected, rtol=1e-5, atol=1e-6)

    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(np.full((20, 10, 3), 90, np.uint8)).save(folder / "a.png")
    images = runner.invoke(app, ["extract", "--checkpoint", str(path), "--images", str(folder), "--out",
                                 str(tmp_path / "i.npz")])
    assert images.exit_code == 0, images.output
    assert np.load(tmp_path / "i.npz")["pids"].tolist() == [-1]


def test_the_metadata_describes_the_preprocessing_that_gives_the_same_embeddings(checkpoint_file, tiny_llcm,
                                                                                  tmp_path):
    """A deployment that follows only the file's metadata embeds an image as the library does."""
    import onnx
    import onnxruntime

    path, _ = checkpoint_file()
    exported = export_onnx(Embedder.from_checkpoint(path), tmp_path / "m.onnx").path
    metadata = {entry.key: json.loads(entry.value) if entry.key in ("mean", "std") else entry.value
                for entry in onnx.load(str(exported)).metadata_props}
    image_path = sorted((tiny_llcm / "test_nir").rglob("*.jpg"))[0]
    image = Image.open(image_path).convert("RGB").resize((int(metadata["input_width"]),
                                                          int(metadata["input_height"])), Image.BILINEAR)
    pixels = (np.asarray(image, np.float32) / float(metadata["pixel_scale"]) - metadata["mean"]) / metadata["std"]
    pixels = pixels.transpose(2, 0, 1)[None].astype(np.float32)
    got = onnxruntime.InferenceSession(str(exported)).run(None, {"images": pixels})[0]
    from reid.data.samples import Sample

    expected = Embedder.from_checkpoint(path, num_workers=0).embeddings([Sample(str(image_path), 1, 1, "ir")])
    np.testing.assert_allclose(got, expected, atol=0.02)  # PIL's and OpenCV's bilinear differ by a grey level


def test_export_without_onnx_names_the_extra(checkpoint_file, tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnx" else real(name, *a))
    path, _ = checkpoint_file()
    result = runner.invoke(app, ["export", "--checkpoint", str(path), "--out", str(tmp_path / "m.onnx")])
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "reid export needs the onnx package" in result.stderr and "pip install -e '.[export]'" in result.stderr
