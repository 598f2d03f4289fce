"""Weight files (ImageNet weights, released checkpoints): reading them, taking the state dict out of its wrappers
and comparing its keys with a model, with errors a user can act on. Run checkpoints of this project (config,
optimiser, history) are ``reid.engine.checkpoint.RunCheckpoint``."""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from reid.errors import ReidError

_WRAPPERS = ("model_ema", "state_dict_ema", "model", "state_dict")
_PREFIXES = ("_orig_mod.", "module.", "_orig_mod.")  # torch.compile and DDP wrappers, in either order


class CheckpointError(ReidError):
    """A weight file cannot be read."""


class CheckpointMismatchError(ReidError):
    """A checkpoint's keys or shapes do not fit the model."""


def read_weights(path: str | Path) -> Any:
    """Load a .pth/.pt (weights only, on CPU) or .safetensors file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch and safetensors raise many types for damaged files
        raise CheckpointError(f"{path}: not a readable checkpoint ({error_summary(error)})") from None


def error_summary(error: BaseException) -> str:
    """The first line of an exception's message, with its type: torch's unpickling errors span many lines."""
    first = next((line.strip() for line in str(error).splitlines() if line.strip()), "")
    return f"{type(error).__name__}: {first[:200]}" if first else type(error).__name__


def unwrap_model(model: nn.Module) -> nn.Module:
    """The model inside its wrappers: torch.compile's (``_orig_mod``), DDP's and the eager fallback's
    (``module``)."""
    while True:
        for attribute in ("_orig_mod", "module"):
            inner = getattr(model, attribute, None)
            if isinstance(inner, nn.Module):
                model = inner
                break
        else:
            return model


def state_dict_from(checkpoint: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The state dict inside a checkpoint: itself, or under model_ema / state_dict_ema / model / state_dict.

    EMA weights win when both are present (as in timm), because they are the ones DeiT-style recipes report.
    DDP ("module.") and torch.compile ("_orig_mod.") prefixes are removed.
    """
    if not isinstance(checkpoint, Mapping):
        raise CheckpointError(f"expected a state dict, got a {type(checkpoint).__name__}")
    for key in _WRAPPERS:
        if isinstance(checkpoint.get(key), Mapping):
            checkpoint = checkpoint[key]
            break
    clean = {}
    for key, value in checkpoint.items():
        for prefix in _PREFIXES:
            key = key.removeprefix(prefix)
        clean[key] = value
    return clean


def check_state_dict(
        state_dict: Mapping[str, torch.Tensor],
        model_state: Mapping[str, torch.Tensor],
        ignore_prefixes: Iterable[str] = (),
        source: str = "checkpoint",
) -> None:
    """Raise ``CheckpointMismatchError`` naming missing, unexpected and wrongly shaped keys.

    Args:
        state_dict: Weights to load.
        model_state: The model's own state dict.
        ignore_prefixes: Keys left to a later adaptation step (classifier, input conv).
        source: What to call the weights in the message (usually the file path).
    """
    ignore = tuple(ignore_prefixes)
    missing = [k for k in model_state if k not in state_dict and not k.startswith(ignore)]
    unexpected = [k for k in state_dict if k not in model_state and not k.startswith(ignore)]
    wrong_shape = [
        f"{k} {tuple(v.shape)} vs model {tuple(model_state[k].shape)}"
        for k, v in state_dict.items()
        if k in model_state and not k.startswith(ignore) and tuple(v.shape) != tuple(model_state[k].shape)
    ]
    if not (missing or unexpected or wrong_shape):
        return
    parts = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape)):
        if keys:
            more = f" ... (+{len(keys) - 8} more)" if len(keys) > 8 else ""
            parts.append(f"{len(keys)} {label}: {', '.join(keys[:8])}{more}")
    raise CheckpointMismatchError(f"{source} does not match the model; " + "; ".join(parts))
