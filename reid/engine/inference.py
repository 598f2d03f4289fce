"""Embedding samples with a model: the ``Embedder`` that a run checkpoint or a bare backbone gives.

Every command that turns images into features (evaluate, visualize, index build / add / query, the demo) goes
through an Embedder, so a model's input size, evaluation pipeline, batch size and identity (backbone and
checkpoint digest, for gallery manifests) travel together.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from torch import nn

from reid.data.loader import SampleDataset, make_loader
from reid.data.samples import MODALITIES, Sample
from reid.data.transforms import AugmentConfig, Pipeline, eval_pipeline
from reid.engine.checkpoint import RunCheckpoint
from reid.engine.compile import CompileMode, compile_model, pad_batch
from reid.errors import ReidError
from reid.io import file_digest
from reid.models.reid_model import ReIDModel


@torch.no_grad()
def extract_features(
        model: nn.Module,
        samples: Sequence[Sample],
        pipeline: Pipeline,
        batch_size: int = 64,
        device: torch.device | str = "cpu",
        seq_len: int = 6,
        num_workers: int | None = None,
        amp_dtype: torch.dtype | None = None,
        progress: Callable[[int], None] | None = None,
        compile: CompileMode = "off",
) -> torch.Tensor:
    """(N, D) float32 retrieval features (the model's BNNeck features) of samples, on the CPU.

    Args:
        compile: Run a compiled copy of the model (see ``reid.engine.compile``); the last, smaller batch is
            padded, so it is compiled once.
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    compiled = compile_model(model, compile, device)
    # a compiled model sees single-modality batches of one size: each modality in its own pass (a mixed batch
    # would route a varying number of images through each modality stem), the last batch padded
    groups = [list(range(len(samples)))] if compiled is model else \
        [[i for i, s in enumerate(samples) if s.modality == m] for m in MODALITIES]
    features = None
    try:
        for rows in filter(None, groups):
            loader = make_loader(SampleDataset([samples[i] for i in rows], pipeline, seq_len), batch_size=batch_size,
                                 num_workers=num_workers, device=device)
            chunks = []
            for images, _, _, infrared in loader:
                images, infrared = images.to(device, non_blocking=True), infrared.to(device)
                count = len(images)
                if compiled is not model:
                    (images, infrared), count = pad_batch((images, infrared), batch_size)
                with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                    output = compiled(images, infrared).bn_features[:count]
                chunks.append(output.float().cpu())
                if progress:
                    progress(count)
            block = torch.cat(chunks)
            if features is None:
                features = block.new_empty(len(samples), block.shape[1])
            features[rows] = block
    finally:
        model.train(was_training)
    return features if features is not None else torch.empty(0, getattr(model, "num_features", 0))


@dataclass
class Embedder:
    """A model ready to embed samples, with what identifies it.

    Attributes:
        model: The re-ID model (eval mode).
        pipeline: Its evaluation transform (resize to its input size, normalise).
        backbone: The timm name of its backbone.
        description: What it is, for table titles ("attnet_t1 from runs/x/best.pt").
        digest: sha256 of the checkpoint (or of the ImageNet weights of a bare backbone); None for random weights.
        device: Where it runs.
        batch_size: Samples per forward pass.
        seq_len: Frames per tracklet (video datasets).
        num_workers: Data loading workers (None: the loader's default).
        amp_dtype: Autocast dtype (None: float32).
        compile: torch.compile for the embedding passes (``reid.engine.compile``).
    """

    model: ReIDModel
    pipeline: Pipeline
    backbone: str
    description: str
    digest: str | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    source: str | None = None  # the checkpoint (or ImageNet weights) file
    batch_size: int = 64
    seq_len: int = 6
    num_workers: int | None = None
    amp_dtype: torch.dtype | None = None
    compile: CompileMode = "off"

    @classmethod
    def from_checkpoint(cls, checkpoint: RunCheckpoint | str | Path, device: torch.device | str = "cpu",
                        **options) -> Embedder:
        """The trained model of a run checkpoint, at the input size it was trained at."""
        if not isinstance(checkpoint, RunCheckpoint):
            checkpoint = RunCheckpoint.load(checkpoint)
        device = torch.device(device)
        return cls(checkpoint.model(device), checkpoint.eval_pipeline(), checkpoint.backbone,
                   f"{checkpoint.backbone} from {checkpoint.path}", checkpoint.digest, device, str(checkpoint.path),
                   **options)

    @classmethod
    def from_backbone(cls, backbone: str, input_size: tuple[int, int] = (288, 144), pretrained: str | None = None,
                      device: torch.device | str = "cpu", **options) -> Embedder:
        """A bare backbone's pooled features (a baseline, untrained for re-ID); random weights are seeded, so
        every process builds the same network."""
        device = torch.device(device)
        torch.manual_seed(0)
        model = ReIDModel(backbone, 0, input_size, pretrained).to(device).eval()
        weights = f"weights {pretrained}" if pretrained else "random weights"
        pipeline = eval_pipeline(AugmentConfig(height=model.input_size[0], width=model.input_size[1]))
        return cls(model, pipeline, backbone, f"{backbone} pooled features ({weights}, untrained for re-ID)",
                   file_digest(pretrained) if pretrained else None, device, str(pretrained) if pretrained else None,
                   **options)

    @classmethod
    def load(cls, checkpoint: str | Path | None, backbone: str | None, pretrained: str | None = None,
             input_size: tuple[int, int] = (288, 144), device: torch.device | str = "cpu", **options) -> Embedder:
        """From exactly one of a run checkpoint and a backbone name (the command line's model options)."""
        if (checkpoint is None) == (backbone is None):
            raise ReidError("give either --checkpoint or --backbone")
        if checkpoint is not None:
            return cls.from_checkpoint(checkpoint, device, **options)
        return cls.from_backbone(backbone, input_size, pretrained, device, **options)

    def identity(self) -> dict[str, str | None]:
        """What was embedded with, for reports: backbone, checkpoint (or weights) file and its sha256."""
        return {"backbone": self.backbone, "checkpoint": self.source, "digest": self.digest}

    @property
    def num_features(self) -> int:
        return self.model.num_features

    @property
    def size_note(self) -> str | None:
        """Why the model runs at another size than asked (fixed-size backbones), or None."""
        return self.model.size_note

    def features(self, samples: Sequence[Sample], progress: Callable[[int], None] | None = None) -> torch.Tensor:
        """(N, D) float32 BNNeck features on the CPU, in the order of ``samples``."""
        return extract_features(self.model, samples, self.pipeline, self.batch_size, self.device, self.seq_len,
                                self.num_workers, self.amp_dtype, progress, self.compile)

    def embeddings(self, samples: Sequence[Sample], progress: Callable[[int], None] | None = None) -> np.ndarray:
        """L2-normalised retrieval embeddings as a float32 array (for FAISS)."""
        return torch.nn.functional.normalize(self.features(samples, progress), dim=1).numpy()


@dataclass(frozen=True)
class SampleFeatures:
    """Features of a set of distinct samples, looked up by sample (what an evaluation embedded, for pictures)."""

    samples: list[Sample]
    features: torch.Tensor

    def of(self, samples: Sequence[Sample]) -> torch.Tensor:
        """The features of ``samples`` (each must be one of ``self.samples``), in their order."""
        try:
            return self.features[[self._rows[s] for s in samples]]
        except KeyError as error:
            raise ReidError(f"no features for {error.args[0].path}") from None

    @cached_property
    def _rows(self) -> dict[Sample, int]:
        return {sample: i for i, sample in enumerate(self.samples)}
