"""Run checkpoints: written atomically, self-describing (config, backbone, version), loadable on their own."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch
from torch import nn

from reid.config import TrainConfig, make_config
from reid.io import atomic_torch_save
from reid.models.checkpoints import CheckpointError
from reid.models.reid_model import ReIDModel

FORMAT = "vireid-checkpoint/1"


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside DDP / torch.compile wrappers."""
    while hasattr(model, "module") or hasattr(model, "_orig_mod"):
        model = getattr(model, "module", None) or model._orig_mod
    return model


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
        "model": unwrap(model).state_dict(), **states,
    }
    return atomic_torch_save(payload, path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read and validate a run checkpoint (not an ImageNet weight file; see load_pretrained for those)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(error).__name__}: {error})") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a reid training checkpoint (for ImageNet weights use --pretrained)")
    return checkpoint


def model_from_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> tuple[ReIDModel, dict[str, Any]]:
    """Rebuild the trained model from a checkpoint alone, in eval mode."""
    checkpoint = load_checkpoint(path)
    config = make_config(checkpoint["config"], f"{path} (config)")
    model = build_model(config, checkpoint["num_classes"], pretrained=False)
    model.load_state_dict(checkpoint["model"])
    return model.to(device).eval(), checkpoint


def file_digest(path: str | Path) -> str:
    """sha256 of a file, to tie a FAISS gallery to the checkpoint that made it."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
