"""Loading ImageNet weights from a local file into AttNet or any timm model (nothing is downloaded)."""
from __future__ import annotations

from pathlib import Path

from timm.models import adapt_input_conv
from torch import nn

from reid.errors import ReidError
from reid.models.attnet import AttNet, remap_released_keys
from reid.models.weights import check_state_dict, read_weights, state_dict_from

# The authors' ImageNet-1K weights: linked from the README of their code release (the page below). Save each
# file under weights/ with these names, which the shipped configs use (any path works with --pretrained).
RELEASE_PAGE = "https://github.com/price112/Attentive-Convolution"
WEIGHT_FILES = {name: f"AttNet_{name.removeprefix('attnet_').upper()}.pth"
                for name in ("attnet_xxs", "attnet_xs", "attnet_s", "attnet_t1", "attnet_t2", "attnet_t3", "attnet_t4")}


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


def weights_status(name: str, folder: str | Path = "weights") -> str | None:
    """For an AttNet variant, whether its released weights are in ``folder`` and load into the network: "ok",
    "missing" or why they do not fit; None for other backbones (timm's own weights come from its hub)."""
    if name not in WEIGHT_FILES:
        return None
    path = Path(folder) / WEIGHT_FILES[name]
    if not path.is_file():
        return f"missing: {path}"
    import timm

    try:
        load_pretrained(timm.create_model(name), path)
    except ReidError as error:
        return f"does not load: {str(error)[:160]}"
    return f"ok: {path}"
