"""Run checkpoints: written atomically, self-describing (config, backbone, version), loadable on their own.

``RunCheckpoint`` is the one typed view of a checkpoint file: its config (input size, backbone, recipe), the
model it rebuilds, its digest (which ties FAISS galleries to it) and the evaluation pipeline its model expects.
ImageNet weight files are read by ``reid.models.weights``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from torch import nn

from reid.config import ConfigError, TrainConfig, make_config
from reid.data.transforms import Pipeline, eval_pipeline
from reid.io import atomic_torch_save, file_digest
from reid.models.reid_model import ReIDModel
from reid.models.weights import CheckpointError, error_summary, unwrap_model

FORMAT = "vireid-checkpoint/1"


def build_model(config: TrainConfig, num_classes: int, pretrained: bool = True) -> ReIDModel:
    """The ReIDModel a config describes (ImageNet weights only when ``pretrained``)."""
    return ReIDModel(config.backbone, num_classes, config.input_size,
                     config.pretrained if pretrained else None, config.pooling, config.modality_stems,
                     config.drop_path_rate)


def save_checkpoint(path: str | Path, model: nn.Module, config: TrainConfig, num_classes: int, epoch: int,
                    best_map: float | None, **states: Any) -> Path:
    """Write a checkpoint atomically; ``states`` adds optimizer / scheduler / scaler / history states."""
    import reid

    payload = {
        "format": FORMAT, "version": reid.__version__, "backbone": config.backbone,
        "config": config.model_dump(), "num_classes": num_classes, "epoch": epoch, "best_map": best_map,
        "model": unwrap_model(model).state_dict(), **states,
    }
    return atomic_torch_save(payload, path)


@dataclass(frozen=True)
class RunCheckpoint:
    """A training run's checkpoint (best.pt / last.pt), read and validated.

    Attributes:
        path: The file.
        config: The run's resolved config (its input size is the one the model was trained at).
        num_classes: Training identities (the classifier's size).
        epoch: Epochs done.
        best_map: Best mAP (%) in the default direction so far, if evaluated.
        state: Everything saved: ``model`` weights and, in last.pt, optimizer / scheduler / scaler / history / rng.
    """

    path: Path
    config: TrainConfig
    num_classes: int
    epoch: int
    best_map: float | None
    state: dict[str, Any] = field(repr=False)

    @classmethod
    def load(cls, path: str | Path) -> RunCheckpoint:
        """Read a run checkpoint (not an ImageNet weight file: those go through ``--pretrained``)."""
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"{path}: no such checkpoint")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # torch raises many types for damaged or foreign files
            raise CheckpointError(f"{path}: not a readable checkpoint ({error_summary(error)})") from None
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise CheckpointError(f"{path}: not a reid training checkpoint (for ImageNet weights use --pretrained)")
        missing = [key for key in ("config", "model", "num_classes", "epoch") if key not in state]
        if missing:
            raise CheckpointError(f"{path}: incomplete checkpoint, no {', '.join(missing)} entry")
        if not isinstance(state["config"], dict):
            raise CheckpointError(f"{path}: the config entry is not a mapping")
        try:
            config = make_config(state["config"], f"{path} (config)")
        except ConfigError as error:
            raise CheckpointError(str(error)) from None
        return cls(path, config, int(state["num_classes"]), int(state["epoch"]), state.get("best_map"), state)

    @property
    def backbone(self) -> str:
        return self.config.backbone

    @property
    def input_size(self) -> tuple[int, int]:
        return self.config.input_size

    @cached_property
    def digest(self) -> str:
        return file_digest(self.path)

    def model(self, device: torch.device | str = "cpu") -> ReIDModel:
        """The trained model, rebuilt from the checkpoint alone, in eval mode."""
        model = build_model(self.config, self.num_classes, pretrained=False)
        try:
            model.load_state_dict(self.state["model"])
        except RuntimeError as error:
            raise CheckpointError(f"{self.path}: its weights do not fit the {self.backbone} model its config "
                                  f"describes ({error_summary(error)})") from None
        return model.to(device).eval()

    def eval_pipeline(self) -> Pipeline:
        """The evaluation transform at the input size the model was trained at."""
        return eval_pipeline(self.config.augment())
