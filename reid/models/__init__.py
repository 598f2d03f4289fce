"""Backbones (ATConv, AttNet, ACmix as timm models) and the re-ID model built on any timm backbone."""
from reid.models.acmix import ACmix
from reid.models.atconv import ATConv, per_sample_depthwise_conv, pooling_matrix
from reid.models.attnet import AttNet, checkpoint_filter_fn, released_state_dict
from reid.models.dropin import with_atconv
from reid.models.pretrained import load_pretrained
from reid.models.weights import CheckpointError, CheckpointMismatchError

__all__ = [
    "ACmix",
    "ATConv",
    "AttNet",
    "CheckpointError",
    "CheckpointMismatchError",
    "checkpoint_filter_fn",
    "load_pretrained",
    "per_sample_depthwise_conv",
    "pooling_matrix",
    "released_state_dict",
    "with_atconv",
]
