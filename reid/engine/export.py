"""A trained model leaves the project: ONNX export of the embedding model, and embeddings as a NumPy archive.

The exported model maps images (B, 3, H, W) - or tracklets (B, T, 3, H, W) for video datasets - to L2-normalised
embeddings, with a dynamic batch axis. The file's metadata (``metadata_props``) says how to prepare its input, so a
deployment needs nothing else: ``input_height`` and ``input_width``, ``resize`` (bilinear or lanczos, from the
decoded image straight to that size, no crop), ``channel_order`` (RGB; infrared images with one channel are
repeated to three), ``pixel_scale`` (255: divide 0..255 values by it), ``mean`` and ``std`` (then subtract and
divide, per channel), ``layout`` (NCHW, or NTCHW with ``frames`` evenly spaced frames for tracklets), plus the
``backbone`` and ``checkpoint_digest`` it came from. It is checked against PyTorch on random input with
onnxruntime when that is installed (the export extra has it).
"""
from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from reid.data.samples import Sample
from reid.engine.inference import Embedder
from reid.errors import ReidError, require
from reid.io import atomic_write
from reid.models.reid_model import ReIDModel


class EmbeddingModel(nn.Module):
    """images -> embeddings (L2-normalised unless ``normalize`` is False): the retrieval half of a ReIDModel, for
    export."""

    def __init__(self, model: ReIDModel, normalize: bool = True) -> None:
        super().__init__()
        self.model, self.normalize = model, normalize

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        embeddings = self.model(images).embeddings
        return F.normalize(embeddings, dim=1) if self.normalize else embeddings



@dataclass(frozen=True)
class ExportResult:
    """Where the model went and how far onnxruntime's output is from PyTorch's (None: not checked)."""

    path: Path
    input_shape: tuple[int, ...]
    max_difference: float | None


def export_onnx(embedder: Embedder, out: str | Path, opset: int = 17, normalize: bool = True) -> ExportResult:
    """Export an embedder's model to ONNX (written atomically) with its preprocessing in the file's metadata, and
    check it against PyTorch.

    Args:
        embedder: What to export (a run checkpoint's model or a bare backbone's, see ``Embedder.load``).
        out: The .onnx file.
        opset: ONNX opset.
        normalize: The file's output is L2-normalised (``reid export``'s); the raw embeddings otherwise (what the
            ONNX Runtime engine runs, ``reid.engine.onnx``).
    """
    require("onnx", "export", "ONNX export")
    import onnx

    model = embedder.model.to("cpu")
    if model.infrared_backbone is not None:
        raise ReidError(f"{embedder.source}: models with modality-specific stems cannot be exported yet (they route "
                        f"each image by its modality)")
    wrapper = EmbeddingModel(model, normalize).eval()  # eval: export restores the wrapper's mode onto the model
    augment = embedder.pipeline.config
    height, width = augment.height, augment.width
    shape = (2, embedder.seq_len, 3, height, width) if embedder.tracklets else (2, 3, height, width)
    example = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    metadata = {"input_height": height, "input_width": width, "resize": augment.resize, "channel_order": "RGB",
                "pixel_scale": 255, "mean": list(augment.mean), "std": list(augment.std),
                "layout": "NTCHW" if embedder.tracklets else "NCHW",
                "output": "L2-normalised embeddings" if normalize else "embeddings (not normalised)",
                "backbone": embedder.backbone, "checkpoint_digest": embedder.digest}
    if embedder.tracklets:
        metadata["frames"] = embedder.seq_len

    def write(temporary: Path) -> None:
        with warnings.catch_warnings():  # the tracer's notes on shape-dependent Python code are about tracing, not
            warnings.simplefilter("ignore", torch.jit.TracerWarning)  # about this model's correctness
            torch.onnx.export(wrapper, (example,), str(temporary), input_names=["images"],
                              output_names=["embeddings"], opset_version=opset, dynamo=False,
                              dynamic_axes={"images": {0: "batch"}, "embeddings": {0: "batch"}})
        exported = onnx.load(str(temporary))
        for key, value in metadata.items():
            entry = exported.metadata_props.add()
            entry.key, entry.value = key, value if isinstance(value, str) else json.dumps(value)
        onnx.save(exported, str(temporary))

    path = atomic_write(out, write)
    return ExportResult(path, shape, check_onnx(path, wrapper, shape))


def check_onnx(path: Path, wrapper: nn.Module, shape: tuple[int, ...]) -> float | None:
    """Largest absolute difference between onnxruntime's and PyTorch's L2-normalised embeddings, on random input of
    two batch sizes (None when onnxruntime is not installed)."""
    try:
        import onnxruntime
    except ImportError:
        return None
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(1)
    worst = 0.0
    for batch in (1, 3):
        images = torch.randn(batch, *shape[1:], generator=generator)
        with torch.no_grad():
            expected = wrapper(images).numpy()
        got = session.run(None, {"images": images.numpy()})[0]
        worst = max(worst, float(np.abs(_unit(got) - _unit(expected)).max()))
    return worst


def _unit(array: np.ndarray) -> np.ndarray:
    return array / np.maximum(np.linalg.norm(array, axis=1, keepdims=True), 1e-12)


def extract_archive(embedder: Embedder, samples: Sequence[Sample], out: str | Path,
                    progress: Callable[[int], None] | None = None) -> Path:
    """Embed ``samples`` and save an .npz (atomically) with ``embeddings`` (N, D, L2-normalised float32), ``paths``
    (a tracklet: its frames joined by os.pathsep), ``pids`` and ``camids`` (the dataset's own numbers; -1 when
    unknown) and ``modalities``."""
    arrays = {
        "embeddings": embedder.embeddings(samples, progress),
        "paths": np.array([os.pathsep.join(s.frames) for s in samples]),
        "pids": np.array([s.pid for s in samples], np.int64),
        "camids": np.array([s.camid for s in samples], np.int64),
        "modalities": np.array([s.modality for s in samples]),
    }

    def write(temporary: Path) -> None:
        with open(temporary, "wb") as handle:
            np.savez_compressed(handle, **arrays)

    return atomic_write(out, write)
