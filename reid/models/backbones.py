"""Creating any timm backbone at the experiment's input size, and measuring its size and cost."""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

import timm
import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from reid.errors import ReidError
from reid.models.pretrained import load_pretrained

# The backbones of the paper's VI-ReID comparison (Table VII), with the seeds' other systems, listed by `reid models`.
PAPER_BACKBONES = (
    "attnet_xxs", "attnet_xs", "attnet_s", "attnet_t1", "attnet_t2", "attnet_t3", "attnet_t4",
    "resnet50", "convnext_tiny", "swin_tiny_patch4_window7_224", "pvt_v2_b1", "pvt_v2_b2",
    "maxvit_tiny_tf_224", "efficientformerv2_s2", "efficientformerv2_l",
    "atconv_swin_tiny", "atconv_pvt_v2_b1", "atconv_pvt_v2_b2",  # ATConv in place of their attention
    "acmix_swin_tiny_patch4_window7_224", "acmix_swin_small_patch4_window7_224",  # ACmix (Pan et al., CVPR 2022)
)


class BackboneError(ReidError):
    """A backbone name or its weights cannot be used."""


@dataclass
class Backbone:
    """A timm model created for feature extraction, with the input size it actually runs at.

    Attributes:
        model: The timm model (``num_classes=0`` unless asked otherwise).
        input_size: (height, width) the model runs at; differs from the requested size only when the
            architecture needs a fixed size that timm cannot change (then ``note`` says so).
        note: Why the input size differs from the request, or None.
    """

    model: nn.Module
    input_size: tuple[int, int]
    note: str | None = None


def native_input_size(model: nn.Module) -> tuple[int, int]:
    size = (getattr(model, "pretrained_cfg", None) or {}).get("input_size", (3, 224, 224))
    return int(size[1]), int(size[2])


def _runs_at(model: nn.Module, input_size: tuple[int, int], in_chans: int) -> bool:
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, in_chans, *input_size))
        return True
    except (RuntimeError, AssertionError, ValueError):
        return False
    finally:
        model.train(was_training)


def create_backbone(
        name: str,
        input_size: tuple[int, int] = (288, 144),
        pretrained: str | Path | None = None,
        num_classes: int = 0,
        in_chans: int = 3,
        check_size: bool = True,
        **kwargs,
) -> Backbone:
    """Create a timm model at ``input_size`` (height, width), falling back to its native size when it needs one.

    Models whose constructor takes ``img_size`` (Swin, ViT, ...) are built for the requested size. A model that
    cannot run at the requested size at all (MaxViT's windows, EfficientFormerV2's attention biases) is created
    at its native size and the returned ``note`` says so.

    Args:
        name: Any timm model name (``attnet_*`` are registered by ``import reid``).
        input_size: Requested (height, width).
        pretrained: Local weight file (the authors' AttNet files or any timm-compatible state dict).
        num_classes: Classifier size; 0 for a feature extractor.
        in_chans: Input channels.
        check_size: Run one zero image through the model to confirm the size (skip for speed in loops).
        **kwargs: Passed to ``timm.create_model`` (drop_path_rate, ...).

    Raises:
        BackboneError: Unknown model name.
    """
    if not timm.is_model(name.split(".")[0]):  # "resnet50.a1_in1k" names a pretrained tag of resnet50
        close = difflib.get_close_matches(name, timm.list_models(), n=5)
        hint = f"; similar: {', '.join(close)}" if close else ""
        raise BackboneError(f"unknown backbone {name!r}{hint}")
    input_size = (int(input_size[0]), int(input_size[1]))
    try:
        model = timm.create_model(name, num_classes=num_classes, in_chans=in_chans, img_size=input_size, **kwargs)
    except TypeError:  # the architecture takes any input size and has no img_size argument
        model = timm.create_model(name, num_classes=num_classes, in_chans=in_chans, **kwargs)
    note = None
    if check_size and not _runs_at(model, input_size, in_chans):
        model = timm.create_model(name, num_classes=num_classes, in_chans=in_chans, **kwargs)
        native = native_input_size(model)
        note = f"{name} needs a fixed input size; using its native {native[0]}x{native[1]} instead of " \
               f"{input_size[0]}x{input_size[1]}"
        input_size = native
    if pretrained is not None:
        load_pretrained(model, pretrained)
    return Backbone(model, input_size, note)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, input_size: tuple[int, int], in_chans: int = 3) -> int:
    """Multiply-accumulates of one image, counted by torch's FlopCounterMode (matmuls and convolutions).

    Norms and element-wise operations are not counted, so this is about 0.5% below fvcore's count. Fused attention
    runs as its math form here, whose matmuls the counter sees (it has no formula for the fused CPU kernel).
    """
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, in_chans, *input_size))
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2


@dataclass(frozen=True)
class BackboneInfo:
    """What `reid models` lists for a backbone.

    Attributes:
        name: timm model name.
        params: Parameters with the 1000-class ImageNet head (the number papers quote).
        macs_224: Multiply-accumulates of one 224x224 image (see ``count_macs``).
        input_size: The size it runs at when asked for the probed size (equal to it unless the model is fixed).
        note: Why it cannot run at the probed size, or None.
    """

    name: str
    params: int
    macs_224: int
    input_size: tuple[int, int]
    note: str | None


def describe_backbone(name: str, probe_size: tuple[int, int] = (288, 144)) -> BackboneInfo:
    imagenet = create_backbone(name, (224, 224), num_classes=1000, check_size=False).model
    probed = create_backbone(name, probe_size)
    return BackboneInfo(name, count_parameters(imagenet), count_macs(imagenet, (224, 224)),
                        probed.input_size, probed.note)
