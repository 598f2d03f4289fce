"""Loading ImageNet weights from a local file into AttNet or any timm model (nothing is downloaded)."""
from __future__ import annotations

from pathlib import Path

from timm.models import adapt_input_conv
from torch import nn

from reid.models.attnet import AttNet, remap_released_keys
from reid.models.weights import check_state_dict, read_weights, state_dict_from


def load_pretrained(model: nn.Module, path: str | Path) -> None:
    """Load a weight file into ``model``, adapting the classifier and the input channels as timm does.

    Accepts the authors' released AttNet files (raw state dict, or wrapped under ``model`` / ``model_ema``),
    this project's own checkpoints and any timm-compatible state dict. A classifier whose size differs from the
    model's (or a model without one) is skipped; a 3-channel input conv is adapted to ``in_chans`` (1 for
    infrared input).

    Raises:
        CheckpointError: The file is missing or unreadable.
        CheckpointMismatchError: Keys or shapes do not fit; the message lists them.
    """
    state = state_dict_from(read_weights(path))
    if isinstance(model, AttNet):
        state = remap_released_keys(state)
    model_state = model.state_dict()
    cfg = getattr(model, "pretrained_cfg", {}) or {}

    classifier = cfg.get("classifier")
    if classifier:
        for suffix in (".weight", ".bias"):
            key = classifier + suffix
            if key in state and (key not in model_state or state[key].shape != model_state[key].shape):
                del state[key]
    first_conv = cfg.get("first_conv")
    if first_conv and (key := first_conv + ".weight") in state and key in model_state:
        wanted, given = model_state[key].shape[1], state[key].shape[1]
        if wanted != given:
            state[key] = adapt_input_conv(wanted, state[key], base_chans=given)

    ignore = [classifier + "."] if classifier and classifier + ".weight" not in state else []
    check_state_dict(state, model_state, ignore_prefixes=ignore, source=str(path))
    model.load_state_dict(state, strict=False)
