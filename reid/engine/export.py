"""A trained model leaves the project: ONNX export of the embedding model, and features as a NumPy archive.

The exported model maps images (B, 3, H, W) - or tracklets (B, T, 3, H, W) for video datasets - to L2-normalised
BNNeck features, with a dynamic batch axis. It is checked against PyTorch on random input with onnxruntime when
that is installed (the dev extra has it).
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from reid.data.registry import dataset_class
from reid.data.samples import Sample
from reid.engine.checkpoint import RunCheckpoint
from reid.engine.inference import Embedder
from reid.errors import ReidError
from reid.io import atomic_write
from reid.models.reid_model import ReIDModel


class EmbeddingModel(nn.Module):
    """images -> L2-normalised BNNeck features: the retrieval half of a ReIDModel, for export."""

    def __init__(self, model: ReIDModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.model(images).bn_features, dim=1)


@dataclass(frozen=True)
class ExportResult:
    """Where the model went and how far onnxruntime's output is from PyTorch's (None: not checked)."""

    path: Path
    input_shape: tuple[int, ...]
    max_difference: float | None


def export_onnx(checkpoint: RunCheckpoint, out: str | Path, opset: int = 17, seq_len: int | None = None
                ) -> ExportResult:
    """Export a run checkpoint's embedding model to ONNX (written atomically) and check it.

    Args:
        checkpoint: The run checkpoint.
        out: The .onnx file.
        opset: ONNX opset.
        seq_len: Frames per tracklet for video datasets (default: the checkpoint's own).
    """
    model = checkpoint.model("cpu")
    if model.infrared_backbone is not None:
        raise ReidError(f"{checkpoint.path}: models with modality-specific stems cannot be exported yet (they route "
                        f"each image by its modality)")
    wrapper = EmbeddingModel(model).eval()  # eval: export restores the wrapper's mode onto the model
    height, width = checkpoint.input_size
    frames = seq_len or checkpoint.config.seq_len
    shape = (2, frames, 3, height, width) if dataset_class(checkpoint.config.dataset).tracklets else \
        (2, 3, height, width)
    example = torch.randn(*shape, generator=torch.Generator().manual_seed(0))

    def write(temporary: Path) -> None:
        torch.onnx.export(wrapper, (example,), str(temporary), input_names=["images"], output_names=["embeddings"],
                          dynamic_axes={"images": {0: "batch"}, "embeddings": {0: "batch"}}, opset_version=opset,
                          dynamo=False)

    path = atomic_write(out, write)
    return ExportResult(path, shape, check_onnx(path, wrapper, shape))


def check_onnx(path: Path, wrapper: nn.Module, shape: tuple[int, ...]) -> float | None:
    """Largest absolute difference between onnxruntime and PyTorch on random input of two batch sizes (None when
    onnxruntime is not installed)."""
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
        worst = max(worst, float(np.abs(got - expected).max()))
    return worst


def extract_archive(embedder: Embedder, samples: Sequence[Sample], out: str | Path,
                    progress: Callable[[int], None] | None = None) -> Path:
    """Embed ``samples`` and save an .npz (atomically) with ``features`` (N, D, L2-normalised float32), ``paths``
    (a tracklet: its frames joined by os.pathsep), ``pids`` and ``camids`` (-1 when unknown) and
    ``modalities``."""
    features = embedder.embeddings(samples, progress)
    arrays = {
        "features": features,
        "paths": np.array([os.pathsep.join(s.frames) for s in samples]),
        "pids": np.array([s.pid for s in samples], np.int64),
        "camids": np.array([s.camid for s in samples], np.int64),
        "modalities": np.array([s.modality for s in samples]),
    }

    def write(temporary: Path) -> None:
        with open(temporary, "wb") as handle:
            np.savez_compressed(handle, **arrays)

    return atomic_write(out, write)
