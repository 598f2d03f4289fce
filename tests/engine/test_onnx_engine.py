"""--engine: ONNX Runtime over the checkpoint's checked export where it can run the model, PyTorch otherwise."""
import numpy as np
import pytest

from reid.engine import onnx
from reid.engine.inference import Embedder
from reid.errors import ReidError

pytest.importorskip("onnxruntime")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """The user's cache folder, kept inside the test."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user-cache"))
    return tmp_path / "user-cache" / "reid" / "onnx"


def pictures(count=5, seed=0):
    generator = np.random.default_rng(seed)
    return [generator.integers(0, 256, (80, 40, 3), dtype=np.uint8) for _ in range(count)]


def test_auto_runs_onnx_runtime_on_a_cpu_with_pytorchs_embeddings(checkpoint_file, cache):
    path, _ = checkpoint_file()
    embedder = Embedder.load(path, engine="auto", num_workers=0, compile="off")
    torch_embedder = Embedder.load(path, engine="torch", num_workers=0, compile="off")
    assert (embedder.engine, torch_embedder.engine) == ("onnxruntime", "torch")
    kept = list((path.parent / ".reid-onnx").glob("*.onnx"))
    assert [file.name for file in kept] == [onnx.cache_path(embedder).name]  # beside the checkpoint, by digest
    assert embedder.digest[:16] in kept[0].name and "64x32" in kept[0].name
    images, infrared = pictures(), [False, True, False, True, True]
    got, want = embedder.embed_images(images, infrared), torch_embedder.embed_images(images, infrared)
    assert np.abs(got - want).max() < onnx.TOLERANCE
    assert embedder.identity() == torch_embedder.identity()  # the same model, whatever runs it


def test_the_kept_export_is_reused_and_a_changed_checkpoint_makes_a_new_one(checkpoint_file, cache, monkeypatch):
    path, _ = checkpoint_file()
    first = Embedder.load(path, engine="onnxruntime", num_workers=0, compile="off")
    made = onnx.cache_path(first)
    before = made.stat().st_mtime_ns

    def no_export(*args, **kwargs):
        raise AssertionError("exported again")

    monkeypatch.setattr("reid.engine.export.export_onnx", no_export)
    again = Embedder.load(path, engine="onnxruntime", num_workers=0, compile="off")
    assert again.onnx.path == made and made.stat().st_mtime_ns == before
    monkeypatch.undo()
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache.parent.parent))
    changed, _ = checkpoint_file(best=12.0)  # other bytes, another digest
    other = Embedder.load(changed, engine="onnxruntime", num_workers=0, compile="off")
    assert other.onnx.path != made and other.onnx.path.is_file()


def test_an_unwritable_checkpoint_folder_keeps_the_export_in_the_users_cache(checkpoint_file, cache, monkeypatch):
    from reid.engine import export

    path, _ = checkpoint_file()
    real = export.export_onnx

    def refuse_beside_the_checkpoint(embedder, out, **options):
        if ".reid-onnx" in str(out):
            raise ReidError(f"cannot write {out}")
        return real(embedder, out, **options)

    monkeypatch.setattr(export, "export_onnx", refuse_beside_the_checkpoint)
    embedder = Embedder.load(path, engine="onnxruntime", num_workers=0, compile="off")
    assert embedder.onnx.path.parent == cache and embedder.onnx.path.is_file()


def test_what_onnx_runtime_cannot_run_is_refused_when_asked_for_and_run_by_pytorch_under_auto(checkpoint_file, cache):
    with pytest.raises(ReidError, match="--engine onnxruntime: a model with random weights has no file"):
        Embedder.load(None, "attnet_xxs", input_size=(64, 32), engine="onnxruntime", num_workers=0)
    assert Embedder.load(None, "attnet_xxs", input_size=(64, 32), engine="auto", num_workers=0).engine == "torch"
    path, _ = checkpoint_file()
    with pytest.raises(ReidError, match="--engine onnxruntime: --compile default asks for PyTorch's compiler"):
        Embedder.load(path, engine="onnxruntime", compile="default", num_workers=0)
    assert Embedder.load(path, engine="auto", compile="default", num_workers=0).engine == "torch"
    with pytest.raises(ReidError, match="--engine must be one of auto, torch, onnxruntime, got 'tensorrt'"):
        Embedder.load(path, engine="tensorrt", num_workers=0)


def test_a_model_with_modality_stems_runs_on_pytorch(tiny_llcm, tmp_path, cache):
    from reid.config import make_config
    from reid.engine.checkpoint import save_checkpoint
    from reid.models.reid_model import ReIDModel

    config = make_config(dict(dataset="llcm", data_root=str(tiny_llcm), backbone="resnet18", input_height=64,
                              input_width=32, modality_stems=True))
    model = ReIDModel("resnet18", 5, (64, 32), modality_stems=True)
    path = save_checkpoint(tmp_path / "stems.pt", model, config, 5, 1, 1.0)
    assert Embedder.load(path, engine="auto", num_workers=0, compile="off").engine == "torch"
    with pytest.raises(ReidError, match="modality-specific stems do not export yet"):
        Embedder.load(path, engine="onnxruntime", num_workers=0, compile="off")


def test_an_export_that_differs_from_pytorch_is_refused_and_auto_falls_back_with_a_note(checkpoint_file, cache,
                                                                                      monkeypatch):
    from reid.engine import export

    path, _ = checkpoint_file()
    real = export.export_onnx

    def off_by_a_lot(embedder, out, **options):
        result = real(embedder, out, **options)
        return type(result)(**{**result.__dict__, "max_difference": 0.5})

    monkeypatch.setattr(export, "export_onnx", off_by_a_lot)
    with pytest.raises(ReidError, match=r"differs from PyTorch by 0.5 \(more than 0.0001\); use --engine torch"):
        Embedder.load(path, engine="onnxruntime", num_workers=0, compile="off")
    embedder = Embedder.load(path, engine="auto", num_workers=0, compile="off")
    assert embedder.engine == "torch" and any("PyTorch runs the model" in note for note in embedder.notes)


def test_without_onnxruntime_auto_is_pytorch_and_asking_names_the_extra(checkpoint_file, cache, monkeypatch):
    import importlib.util

    path, _ = checkpoint_file()
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    assert Embedder.load(path, engine="auto", num_workers=0, compile="off").engine == "torch"
    with pytest.raises(ReidError, match=r"onnxruntime is not installed \(pip install -e '.\[export\]'\)"):
        Embedder.load(path, engine="onnxruntime", num_workers=0, compile="off")
