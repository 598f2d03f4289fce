"""Loading ImageNet weights from a local file into AttNet, ACmix or any timm model (nothing is downloaded)."""
from __future__ import annotations

from pathlib import Path

from timm.models import adapt_input_conv
from torch import nn

from reid.catalogue import RELEASED_WEIGHTS
from reid.errors import ReidError
from reid.models import acmix
from reid.models.attnet import AttNet, remap_released_keys
from reid.models.weights import check_state_dict, read_weights, state_dict_from


def load_pretrained(model: nn.Module, path: str | Path) -> None:
    """Load a weight file into ``model``, adapting the classifier and the input channels as timm does.

    Accepts the authors' released AttNet and ACmix files (raw state dict, or wrapped under ``model`` /
    ``model_ema``), this project's own checkpoints and any timm-compatible state dict. A classifier whose size
    differs from the model's (or a model without one) is skipped; a 3-channel input conv is adapted to
    ``in_chans`` (1 for infrared input).

    Raises:
        CheckpointError: The file is missing or unreadable.
        CheckpointMismatchError: Keys or shapes do not fit; the message lists them.
    """
    state = state_dict_from(read_weights(path))
    if isinstance(model, AttNet):
        state = remap_released_keys(state)
    elif isinstance(model, acmix.ACmixSwinTransformer):
        state = acmix.remap_released_keys(state, model)
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
