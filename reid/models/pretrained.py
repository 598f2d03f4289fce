"""Loading ImageNet weights from a local file into AttNet, ACmix or any timm model (nothing is downloaded)."""
from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from timm.models import adapt_input_conv
from torch import nn

from reid.catalogue import RELEASED_WEIGHTS
from reid.errors import ReidError
from reid.models.weights import CheckpointMismatchError, check_state_dict, read_weights, state_dict_from


def filter_of(model: nn.Module) -> Callable | None:
    """The model's checkpoint filter, where timm keeps it: the ``checkpoint_filter_fn`` of the module that defines
    the model's class (timm's convention, which AttNet's and ACmix's modules follow: a released file's layout to the
    model's), or None when that module has none."""
    return getattr(sys.modules.get(type(model).__module__), "checkpoint_filter_fn", None)


def load_pretrained(model: nn.Module, path: str | Path) -> None:
    """Load a weight file into ``model``, adapting the classifier and the input channels as timm does.

    Accepts the authors' released AttNet and ACmix files (raw state dict, or wrapped under ``model`` /
    ``model_ema``), this project's own checkpoints and any timm-compatible state dict: the model's own
    checkpoint filter (``filter_of``, as timm's ``pretrained=True`` applies it) maps a released layout. A
    classifier whose size differs from the model's (or a model without one) is skipped; a 3-channel input conv is
    adapted to ``in_chans`` (1 for infrared input).

    Raises:
        CheckpointError: The file is missing or unreadable.
        CheckpointMismatchError: Keys or shapes do not fit; the message lists them.
    """
    state = state_dict_from(read_weights(path))
    filter_fn = filter_of(model)
    if filter_fn is not None:
        try:
            state = filter_fn(state, model)
        except CheckpointMismatchError as error:
            raise CheckpointMismatchError(f"{path}: {error}") from None
    model_state = model.state_dict()
    cfg = getattr(model, "pretrained_cfg", {}) or {}

    classifier = cfg.get("classifier") or ()
    classifiers = [classifier] if isinstance(classifier, str) else list(classifier)  # EfficientFormerV2: two
    for name in classifiers:
        for suffix in (".weight", ".bias"):
            key = name + suffix
            if key in state and (key not in model_state or state[key].shape != model_state[key].shape):
                del state[key]
    first_conv = cfg.get("first_conv")
    if first_conv and (key := first_conv + ".weight") in state and key in model_state:
        wanted, given = model_state[key].shape[1], state[key].shape[1]
        if wanted != given:
            state[key] = adapt_input_conv(wanted, state[key], base_chans=given)

    ignore = [name + "." for name in classifiers if name + ".weight" not in state]
    check_state_dict(state, model_state, ignore_prefixes=ignore, source=str(path))
    model.load_state_dict(state, strict=False)


def weights_status(name: str, folder: str | Path = "weights") -> str | None:
    """For a model with released weights (AttNet, ACmix), whether its file is in ``folder`` and loads into the
    network: "ok: PATH", "missing: PATH" or why it does not fit; None for other backbones (timm's own weights
    come from its hub)."""
    if name not in RELEASED_WEIGHTS:
        return None
    path = Path(folder) / RELEASED_WEIGHTS[name].file
    if not path.is_file():
        return f"missing: {path}"
    import timm

    try:
        load_pretrained(timm.create_model(name), path)
    except ReidError as error:
        return f"does not load: {str(error)[:160]}"
    return f"ok: {path}"
