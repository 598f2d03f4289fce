"""Embedding samples with a model: the ``Embedder`` that a run checkpoint or a bare backbone gives.

Every command that turns images into embeddings (evaluate, visualize, index build / add / query, extract, export,
serve) goes through an Embedder built by ``Embedder.load`` from the command line's model options, so a model's
input size, evaluation pipeline, device, engine, batch size, AMP, compile setting and identity (backbone and
checkpoint digest, for gallery manifests) travel together. The demo and the trainer build theirs from the model
they hold (``Embedder.from_checkpoint``, or the constructor).

Embeddings are what retrieval ranks by: the BNNeck's output (for a bare backbone, its pooled output).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from torch import nn

from reid import threads as threads_module
from reid.data.loader import SampleDataset, make_loader
from reid.data.registry import dataset_class
from reid.data.samples import MODALITIES, Sample
from reid.data.transforms import Pipeline, eval_pipeline
from reid.engine.checkpoint import RunCheckpoint
from reid.engine.compile import compile_model, pad_batch
from reid.engine.runtime import resolve_amp, resolve_device
from reid.errors import ReidError
from reid.io import file_digest
from reid.models.reid_model import ReIDModel
from reid.settings import ENGINES, AmpMode, AugmentConfig, CompileMode, DeviceName, EngineName, parse_size


class _FellBack(Exception):
    """A compiled embedding pass fell back to eager: the pass is done again as an eager one."""


@torch.no_grad()
def embed_samples(
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
        on_fallback: Callable[[str], None] | None = None,
) -> torch.Tensor:
    """(N, D) float32 embeddings of samples, on the CPU.

    Args:
        compile: Run a compiled copy of the model as ``reid.engine.compile`` resolves it for this many samples (a
            compiled model's last, smaller batch is padded, so it is compiled once).
        on_fallback: Told (one line) if the compilation fails; the pass is then done as an eager pass does it
            (the same batches, no padding), so its numbers are the eager pass's.
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    try:
        compiled = compile_model(model, compile, device, images=len(samples), on_fallback=on_fallback)
        if compiled is not model:
            reported = [0]

            def counted(count: int) -> None:
                reported[0] += count
                if progress:
                    progress(count)

            try:
                return _embedding_pass(compiled, samples, pipeline, batch_size, device, seq_len, num_workers,
                                       amp_dtype, counted, padded=True)
            except _FellBack:
                progress = _skipping(progress, reported[0])  # the bar does not count the redone images twice
        return _embedding_pass(model, samples, pipeline, batch_size, device, seq_len, num_workers, amp_dtype,
                               progress, padded=False)
    finally:
        model.train(was_training)


def _skipping(progress: Callable[[int], None] | None, already: int) -> Callable[[int], None] | None:
    """``progress`` told only of the images beyond the first ``already``."""
    if progress is None or already == 0:
        return progress
    left = [already]

    def told(count: int) -> None:
        skipped = min(left[0], count)
        left[0] -= skipped
        if count > skipped:
            progress(count - skipped)

    return told


def _embedding_pass(runner: Callable, samples: Sequence[Sample], pipeline: Pipeline, batch_size: int,
                    device: torch.device, seq_len: int, num_workers: int | None, amp_dtype: torch.dtype | None,
                    progress: Callable[[int], None] | None, padded: bool) -> torch.Tensor:
    """One pass over ``samples``. A compiled model (``padded``) sees single-modality batches of one size: each
    modality in its own pass (a mixed batch would route a varying number of images through each modality stem),
    the last batch padded; raises _FellBack when its compilation fails."""
    groups = [[i for i, s in enumerate(samples) if s.modality == m] for m in MODALITIES] if padded else \
        [list(range(len(samples)))]
    embeddings = None
    for rows in filter(None, groups):
        loader = make_loader(SampleDataset([samples[i] for i in rows], pipeline, seq_len), batch_size=batch_size,
                             num_workers=num_workers, device=device)
        chunks = []
        for images, _, _, infrared in loader:
            images, infrared = images.to(device, non_blocking=True), infrared.to(device)
            count = len(images)
            if padded:
                (images, infrared), count = pad_batch((images, infrared), batch_size)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                output = runner(images, infrared).embeddings[:count]
            if getattr(runner, "fell_back", False):
                raise _FellBack
            chunks.append(output.float().cpu())
            if progress:
                progress(count)
        block = torch.cat(chunks)
        if embeddings is None:
            embeddings = block.new_empty(len(samples), block.shape[1])
        embeddings[rows] = block
    return embeddings if embeddings is not None else torch.empty(0, getattr(runner, "num_features", 0))


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
        tracklets: Whether the model embeds tracklets of ``seq_len`` frames (trained on a video dataset).
        on_fallback: Told (one line) when a compilation fails and a pass runs eagerly.
        notes: Lines for the user about how it runs (its size, a busy machine).
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
    tracklets: bool = False
    on_fallback: Callable[[str], None] | None = field(default=None, repr=False)
    notes: list[str] = field(default_factory=list)  # what a user should hear about how it runs (a busy machine)
    onnx: Callable | None = field(default=None, repr=False)  # ONNX Runtime over the model's export (reid.engine.onnx)

    @property
    def engine(self) -> str:
        """What runs the model: "torch", or "onnxruntime"."""
        return "torch" if self.onnx is None else "onnxruntime"

    @classmethod
    def from_checkpoint(cls, checkpoint: RunCheckpoint | str | Path, device: torch.device | str = "cpu",
                        **options) -> Embedder:
        """The trained model of a run checkpoint, at the input size it was trained at."""
        if not isinstance(checkpoint, RunCheckpoint):
            checkpoint = RunCheckpoint.load(checkpoint)
        device = torch.device(device)
        options = {"seq_len": checkpoint.model_config.seq_len,
                   "tracklets": dataset_class(checkpoint.model_config.dataset).tracklets, **options}
        return cls(checkpoint.model(device), checkpoint.eval_pipeline(), checkpoint.backbone,
                   f"{checkpoint.backbone} from {checkpoint.path}", checkpoint.digest, device, str(checkpoint.path),
                   **options)

    @classmethod
    def from_backbone(cls, backbone: str, input_size: tuple[int, int] = (288, 144), pretrained: str | None = None,
                      device: torch.device | str = "cpu", **options) -> Embedder:
        """A bare backbone's pooled output as its embeddings (a baseline, untrained for re-ID); random weights are
        seeded, so every process builds the same network."""
        device = torch.device(device)
        torch.manual_seed(0)
        model = ReIDModel(backbone, 0, input_size, pretrained).to(device).eval()
        weights = f"weights {pretrained}" if pretrained else "random weights"
        pipeline = eval_pipeline(AugmentConfig(height=model.input_size[0], width=model.input_size[1]))
        return cls(model, pipeline, backbone, f"{backbone} pooled output ({weights}, untrained for re-ID)",
                   file_digest(pretrained) if pretrained else None, device, str(pretrained) if pretrained else None,
                   **options)

    @classmethod
    def load(
            cls,
            checkpoint: str | Path | None = None,
            backbone: str | None = None,
            pretrained: str | Path | None = None,
            input_size: tuple[int, int] | str = (288, 144),
            device: DeviceName = "auto",
            threads: int | None = None,
            amp: AmpMode = "auto",
            batch_size: int | None = None,
            num_workers: int | None = None,
            compile: CompileMode = "auto",
            seq_len: int | None = None,
            engine: EngineName = "auto",
    ) -> Embedder:
        """The Embedder the command line's model options describe: exactly one of a run checkpoint and a backbone
        name, on ``device`` ("auto": CUDA when there is a GPU), in batches of ``batch_size`` (default 256 on CUDA,
        64 on a CPU), with AMP and compile resolved for the device; on a CPU, torch's threads are sized as
        ``reid.threads`` plans them (``threads`` when given), and a busy machine is said in ``notes``.

        Args:
            input_size: (height, width) or "HxW" for a backbone (a checkpoint has its own).
            num_workers: Loading workers of the embedding passes (None: ``reid.data.loader.default_workers``).
            seq_len: Frames per tracklet (None: the checkpoint's own, else 6).
            engine: "torch", "onnxruntime" (a ReidError when it cannot run the model) or "auto" (ONNX Runtime where
                ``reid.engine.onnx`` says it can, PyTorch otherwise; a failed export falls back with a note).
        """
        if (checkpoint is None) == (backbone is None):
            raise ReidError("give either --checkpoint or --backbone")
        torch_device = resolve_device(device)
        notes = []
        if torch_device.type == "cpu":
            plan = threads_module.plan(threads)
            threads_module.apply(plan)
            notes += [plan.note] if plan.note else []
            num_workers = plan.workers if num_workers is None else num_workers
        options = dict(batch_size=batch_size or (256 if torch_device.type == "cuda" else 64),
                       amp_dtype=resolve_amp(amp, torch_device), compile=compile, num_workers=num_workers,
                       notes=notes)
        if seq_len is not None:
            options["seq_len"] = seq_len
        if checkpoint is not None:
            embedder = cls.from_checkpoint(checkpoint, torch_device, **options)
        else:
            size = parse_size(input_size, "--input-size") if isinstance(input_size, str) else input_size
            embedder = cls.from_backbone(backbone, size, pretrained, torch_device, **options)
            if embedder.size_note:
                embedder.notes.insert(0, embedder.size_note)
        embedder.use_engine(engine)
        return embedder

    def use_engine(self, engine: str) -> None:
        """Run the model with ``engine`` (see ``load``)."""
        from reid.engine import onnx

        if engine not in ENGINES:
            raise ReidError(f"--engine must be one of {', '.join(ENGINES)}, got {engine!r}")
        if engine == "torch":
            self.onnx = None
            return
        reason = onnx.why_not(self, self.compile)
        if reason is not None:
            if engine == "onnxruntime":
                raise ReidError(f"--engine onnxruntime: {reason}")
            return
        try:
            self.onnx = onnx.prepare(self)
        except ReidError as error:
            if engine == "onnxruntime":
                raise
            self.notes.append(f"{error}; PyTorch runs the model")

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

    @property
    def runner(self) -> Callable:
        """What runs the model: the model itself (PyTorch), or ONNX Runtime over its export."""
        return self.onnx if self.onnx is not None else self.model

    def embed(self, samples: Sequence[Sample], progress: Callable[[int], None] | None = None) -> torch.Tensor:
        """(N, D) float32 embeddings on the CPU, in the order of ``samples``."""
        return embed_samples(self.runner, samples, self.pipeline, self.batch_size, self.device, self.seq_len,
                             self.num_workers, self.amp_dtype, progress,
                             self.compile if self.onnx is None else "off", self.on_fallback)

    def embeddings(self, samples: Sequence[Sample], progress: Callable[[int], None] | None = None) -> np.ndarray:
        """L2-normalised embeddings as a float32 array (for FAISS and other cosine search)."""
        return torch.nn.functional.normalize(self.embed(samples, progress), dim=1).numpy()

    @torch.no_grad()
    def embed_images(self, images: Sequence[np.ndarray], infrared: Sequence[bool]) -> np.ndarray:
        """L2-normalised embeddings of decoded images ((H, W, 3) uint8 arrays, e.g. uploads), in forward passes of
        ``batch_size``: what a server calls with the images of several requests at once."""
        self.model.eval()
        chunks = []
        for start in range(0, len(images), self.batch_size):
            batch = torch.stack([self.pipeline([image])[0] for image in images[start:start + self.batch_size]])
            flags = torch.tensor(list(infrared[start:start + self.batch_size]), device=self.device)
            with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
                chunks.append(self.runner(batch.to(self.device), flags).embeddings.float().cpu())
        return torch.nn.functional.normalize(torch.cat(chunks), dim=1).numpy()


@dataclass(frozen=True)
class SampleEmbeddings:
    """Embeddings of a set of distinct samples, looked up by sample (what an evaluation embedded, for pictures)."""

    samples: list[Sample]
    embeddings: torch.Tensor

    def of(self, samples: Sequence[Sample]) -> torch.Tensor:
        """The embeddings of ``samples`` (each must be one of ``self.samples``), in their order."""
        try:
            return self.embeddings[[self._rows[s] for s in samples]]
        except KeyError as error:
            raise ReidError(f"no embedding of {error.args[0].path}") from None

    @cached_property
    def _rows(self) -> dict[Sample, int]:
        return {sample: i for i, sample in enumerate(self.samples)}
