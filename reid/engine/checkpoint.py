"""Checkpoints of training runs: one format for ``reid train`` and ``reid pretrain``, written atomically.

A checkpoint is a dict saved with ``torch.save`` and read with ``weights_only=True`` (no file can execute code):
``format``, ``kind`` ("reid" or "pretrain"), ``version``, ``config`` (the run's resolved config), ``epoch``
(epochs finished), ``best`` (the best score so far: mAP in percent, or ImageNet top-1 in percent), ``model`` (and
``model_ema``) weights, and in last.pt everything a resume needs (optimizer, scheduler, scaler, history, rng). A
re-ID checkpoint also keeps ``model_config`` (``reid.config.ModelConfig``: what the model is, apart from how it
was trained) and its ``model_config_version``. ``write_checkpoint`` and ``read_checkpoint`` are the one writer and
reader. Pretraining checkpoints keep their weights in the released AttNet key layout under ``model`` /
``model_ema``, so they also load as ImageNet weights.

``RunCheckpoint`` is the typed view of a re-ID run's checkpoint: its model config (what rebuilds the model and its
evaluation pipeline), its training config when that still validates, its digest (which ties FAISS galleries to
it). Checkpoints of earlier formats load: their model config is read from their training config, under today's
names (``TrainConfig.RENAMED``), and a model config of an earlier version is migrated (``ModelConfig.migrated``).
ImageNet weight files are read by ``reid.models.weights``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ValidationError
from torch import nn

from reid.config import ConfigError, ModelConfig, TrainConfig, make_config
from reid.data.transforms import Pipeline, eval_pipeline
from reid.errors import ReidError
from reid.index.settings import one_line
from reid.io import atomic_torch_save, file_digest
from reid.models.reid_model import ReIDModel
from reid.models.weights import CheckpointError, error_summary, unwrap_model

FORMAT = "vireid-checkpoint/3"
# format 1: reid runs only, the best score named best_map; format 2: no model config of its own
READABLE = ("vireid-checkpoint/1", "vireid-checkpoint/2", FORMAT)
KINDS = ("reid", "pretrain")


def build_model(config: TrainConfig | ModelConfig, num_classes: int, pretrained: bool = True) -> ReIDModel:
    """The ReIDModel a training or model config describes (a training config's ImageNet weights only when
    ``pretrained``)."""
    weights = getattr(config, "pretrained", None) if pretrained else None
    return ReIDModel(config.backbone, num_classes, config.input_size, weights, config.pooling, config.modality_stems,
                     config.drop_path_rate, config.last_stride, config.gem_trainable, config.bnneck_init_std,
                     config.non_local, config.non_local_channels)


def model_entries(config: TrainConfig, num_classes: int) -> dict[str, Any]:
    """What a re-ID checkpoint keeps of its model beside the weights: the backbone, the classes, the model config
    and its version."""
    return {"backbone": config.backbone, "num_classes": num_classes,
            "model_config": ModelConfig.of(config, num_classes).model_dump(),
            "model_config_version": ModelConfig.VERSION}


def write_checkpoint(path: str | Path, kind: str, config: BaseModel, epoch: int, best: float | None,
                     **entries: Any) -> Path:
    """Write a checkpoint atomically: the common header, then ``entries`` (model weights, optimiser states, ...)."""
    import reid

    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    header = {"format": FORMAT, "kind": kind, "version": reid.__version__, "config": config.model_dump(),
              "epoch": epoch, "best": best}
    return atomic_torch_save(header | entries, path)


def read_checkpoint(path: str | Path, kind: str) -> dict[str, Any]:
    """Read a checkpoint of ``kind`` (weights only: no file can execute code); every way it can be wrong is a
    CheckpointError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for damaged or foreign files
        raise CheckpointError(f"{path}: not a readable checkpoint ({error_summary(error)})") from None
    if not isinstance(state, dict) or state.get("format") not in READABLE:
        what = "a reid training checkpoint (for ImageNet weights use --pretrained)" if kind == "reid" else \
            "a reid pretraining checkpoint"
        raise CheckpointError(f"{path}: not {what}")
    found = state.get("kind", "reid")
    if found != kind:
        raise CheckpointError(f"{path}: a {found} checkpoint, not a {kind} one")
    missing = [key for key in ("config", "model", "epoch") if key not in state]
    if missing:
        raise CheckpointError(f"{path}: incomplete checkpoint, no {', '.join(missing)} entry")
    if not isinstance(state["config"], dict):
        raise CheckpointError(f"{path}: the config entry is not a mapping")
    if "best" not in state:
        state["best"] = state.get("best_map")
    return state


def save_checkpoint(path: str | Path, model: nn.Module, config: TrainConfig, num_classes: int, epoch: int,
                    best: float | None) -> Path:
    """Write a re-ID model as a run checkpoint (what best.pt holds), e.g. a model trained elsewhere."""
    return write_checkpoint(path, "reid", config, epoch, best, **model_entries(config, num_classes),
                            model=unwrap_model(model).state_dict())


@dataclass(frozen=True)
class RunCheckpoint:
    """A training run's checkpoint (best.pt / last.pt), read and validated.

    Attributes:
        path: The file.
        model_config: What the model is (backbone, input, options, classes): what rebuilds it.
        config: The run's training config, when it still validates (None for a checkpoint whose training config
            names settings this version no longer knows; its model loads all the same).
        num_classes: Training identities (the classifier's size).
        epoch: Epochs done.
        best: The best score so far in the default direction (%, the config's best_metric: mAP unless it says
            rank1), if evaluated.
        state: Everything saved: ``model`` weights and, in last.pt, optimizer / scheduler / scaler / history / rng.
    """

    path: Path
    model_config: ModelConfig
    config: TrainConfig | None
    num_classes: int
    epoch: int
    best: float | None
    state: dict[str, Any] = field(repr=False)

    @classmethod
    def load(cls, path: str | Path) -> RunCheckpoint:
        """Read a run checkpoint (not an ImageNet weight file: those go through ``--pretrained``)."""
        path = Path(path)
        state = read_checkpoint(path, "reid")
        if "num_classes" not in state:
            raise CheckpointError(f"{path}: incomplete checkpoint, no num_classes entry")
        num_classes = int(state["num_classes"])
        try:
            if isinstance(state.get("model_config"), dict):
                model = ModelConfig.migrated(state["model_config"], int(state.get("model_config_version", 1)))
            else:  # formats 1 and 2: the model config is read from the training config
                model = ModelConfig.from_training(state["config"], num_classes)
        except (ValidationError, ReidError, TypeError, ValueError) as error:
            reason = one_line(error) if isinstance(error, ValidationError) else str(error)
            raise CheckpointError(f"{path}: its model config is not readable ({reason})") from None
        try:
            config = make_config(state["config"], f"{path} (config)")
        except ConfigError:
            config = None  # a training setting this version does not know: the model still loads
        return cls(path, model, config, num_classes, int(state["epoch"]), state["best"], state)

    @property
    def backbone(self) -> str:
        return self.model_config.backbone

    @property
    def input_size(self) -> tuple[int, int]:
        return self.model_config.input_size

    @cached_property
    def digest(self) -> str:
        return file_digest(self.path)

    def model(self, device: torch.device | str = "cpu") -> ReIDModel:
        """The trained model, rebuilt from the checkpoint alone, in eval mode."""
        model = build_model(self.model_config, self.num_classes, pretrained=False)
        try:
            model.load_state_dict(self.state["model"])
        except RuntimeError as error:
            raise CheckpointError(f"{self.path}: its weights do not fit the {self.backbone} model its config "
                                  f"describes ({error_summary(error)})") from None
        return model.to(device).eval()

    def eval_pipeline(self) -> Pipeline:
        """The evaluation transform at the input size the model was trained at."""
        return eval_pipeline(self.model_config.augment())
