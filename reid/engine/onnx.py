"""ONNX Runtime as the engine that embeds, where it is faster than PyTorch: on a CPU.

The commands that embed (``serve``, ``index build / add / query``, ``extract``, ``evaluate``, ``visualize``) take
``--engine torch|onnxruntime|auto``. ONNX Runtime runs the model ``reid export`` writes (the raw embeddings here,
so the numbers are the Embedder's: normalised where it normalises), exported once per checkpoint and kept beside
it (``.reid-onnx/``, named by the checkpoint's digest and the input size), checked against PyTorch on random input
when it is made (as ``reid export`` checks its file) and refused when they differ by more than ``TOLERANCE``.

``auto`` is ONNX Runtime on a CPU when onnxruntime and onnx are installed, the model exports (models with
modality-specific stems route each image by its modality, which the export does not), no compilation is asked
for, and the weights come from a file (a checkpoint, or ImageNet weights: a random backbone has nowhere to be kept);
PyTorch otherwise. ``benchmarks/bench_cpu_inference.py`` measures the engines (BENCHMARKS.md).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from reid.errors import ReidError
from reid.io import atomic_write_text
from reid.models.reid_model import ReIDOutput

if TYPE_CHECKING:
    from reid.engine.inference import Embedder

TOLERANCE = 1e-4  # the largest difference from PyTorch's embeddings a checked file may have (both normalised)


@dataclass
class OnnxRunner:
    """Runs an exported embedding model with ONNX Runtime, called as the re-ID model is: ``runner(images,
    is_infrared).embeddings`` (the raw embeddings; ``pooled`` is the same tensor, ``logits`` None)."""

    session: object
    path: Path
    training = False  # an embedding pass asks a model for its mode, and sets it

    def __call__(self, images: torch.Tensor, is_infrared: torch.Tensor | None = None) -> ReIDOutput:
        array = images.detach().to("cpu", torch.float32).contiguous().numpy()
        embeddings = torch.from_numpy(self.session.run(None, {"images": array})[0])
        return ReIDOutput(embeddings, embeddings, None)

    def train(self, mode: bool = True) -> OnnxRunner:  # what an embedding pass asks of a model
        return self

    def eval(self) -> OnnxRunner:
        return self


def why_not(embedder: Embedder, compile_mode: str = "auto") -> str | None:
    """Why ONNX Runtime cannot run this embedder, or None when it can."""
    import importlib.util

    if embedder.device.type != "cpu":
        return f"the model runs on {embedder.device.type}, where PyTorch is the engine"
    missing = [name for name in ("onnxruntime", "onnx") if importlib.util.find_spec(name) is None]
    if missing:
        return f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not installed (pip install -e " \
               f"'.[export]')"
    if embedder.model.infrared_backbone is not None:
        return "models with modality-specific stems do not export yet"
    if compile_mode not in ("auto", "off"):
        return f"--compile {compile_mode} asks for PyTorch's compiler"
    if embedder.source is None or embedder.digest is None:
        return "a model with random weights has no file to keep its export beside"
    return None


def cache_path(embedder: Embedder) -> Path:
    """Where the export of an embedder's model is kept: beside its checkpoint (or weights) file, named by the
    file's digest, the input size and, for tracklets, the frames."""
    config = embedder.pipeline.config
    frames = f"-t{embedder.seq_len}" if embedder.tracklets else ""
    name = f"{Path(embedder.source).stem}-{embedder.digest[:16]}-{config.height}x{config.width}{frames}.onnx"
    return Path(embedder.source).parent / ".reid-onnx" / name


def _user_cache() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "reid" / "onnx"


def _versions() -> dict[str, str]:
    import onnxruntime

    import reid

    return {"reid": reid.__version__, "torch": torch.__version__, "onnxruntime": onnxruntime.__version__}


def prepare(embedder: Embedder) -> OnnxRunner:
    """The ONNX Runtime runner of an embedder's model: the kept export when it was checked with these versions,
    else a new export (beside the checkpoint, or in the user's cache when that folder cannot be written), checked
    against PyTorch. A ReidError says why it cannot be had."""
    from reid.engine.export import export_onnx

    reason = why_not(embedder)
    if reason is not None:
        raise ReidError(f"--engine onnxruntime: {reason}")
    path = cache_path(embedder)
    record = _record(path)
    if record is not None and record.get("versions") == _versions():
        return OnnxRunner(_session(Path(record["path"])), Path(record["path"]))
    for folder in (path.parent, _user_cache()):
        candidate = folder / path.name
        try:
            result = export_onnx(embedder, candidate, normalize=False)
        except ReidError:
            continue  # an unwritable folder: the next one
        if result.max_difference is None or result.max_difference > TOLERANCE:
            raise ReidError(f"--engine onnxruntime: the export of {embedder.source} differs from PyTorch by "
                            f"{result.max_difference} (more than {TOLERANCE}); use --engine torch")
        atomic_write_text(_sidecar(candidate), json.dumps({"max_difference": result.max_difference,
                                                           "versions": _versions()}) + "\n")
        return OnnxRunner(_session(candidate), candidate)
    raise ReidError(f"--engine onnxruntime: nowhere to keep the export of {embedder.source} (its folder and "
                    f"{_user_cache()} cannot be written)")


def _record(path: Path) -> dict | None:
    """The check a kept export passed (None when it has none, or it is not there)."""
    for candidate in (path, _user_cache() / path.name):
        try:
            if candidate.is_file():
                return json.loads(_sidecar(candidate).read_text()) | {"path": str(candidate)}
        except (OSError, ValueError):
            continue
    return None


def _sidecar(path: Path) -> Path:
    return path.with_suffix(".json")


def _session(path: Path):
    """An ONNX Runtime session on the CPU with torch's thread count (``reid.threads`` sized it)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
