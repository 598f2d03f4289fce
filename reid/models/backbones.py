"""Creating any timm backbone at the experiment's input size, and measuring its size and cost."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import timm
import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from reid.catalogue import BackboneEntry, unknown_backbone, weights_file
from reid.errors import ReidError
from reid.models.pretrained import load_pretrained


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
        last_stride: int | None = None,
        **kwargs,
) -> Backbone:
    """Create a timm model at ``input_size`` (height, width), falling back to its native size when it needs one.

    Models whose constructor takes ``img_size`` (Swin, ViT, ...) are built for the requested size. A model that
    cannot run at the requested size at all (MaxViT's windows, EfficientFormerV2's attention biases) is created
    at its native size and the returned ``note`` says so.

    Args:
        name: Any timm model name (``attnet_*`` are registered by ``import reid.models``, which this module imports).
        input_size: Requested (height, width).
        pretrained: Local weight file (the authors' AttNet files or any timm-compatible state dict).
        num_classes: Classifier size; 0 for a feature extractor.
        in_chans: Input channels.
        check_size: Run one zero image through the model to confirm the size (skip for speed in loops).
        last_stride: The stride of the last stage (ResNet family only; None keeps the architecture's 2). Re-ID
            baselines (BoT, AGW, fast-reid) use 1: an 18x9 map at 288x144 instead of 9x5, without dilation.
        **kwargs: Passed to ``timm.create_model`` (drop_path_rate, ...).

    Raises:
        BackboneError: Unknown model name, or a last stride for a backbone that has none to change.
    """
    if not timm.is_model(name.split(".")[0]):  # "resnet50.a1_in1k" names a pretrained tag of resnet50
        raise BackboneError(unknown_backbone(name, timm.list_models()))
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
    if last_stride is not None:
        set_last_stride(model, last_stride, name)
    if pretrained is not None:
        load_pretrained(model, pretrained)
    return Backbone(model, input_size, note)


def set_last_stride(model: nn.Module, stride: int, name: str = "") -> None:
    """Make a ResNet-family network's last stage stride ``stride`` (its first block's 3x3 convolution and
    shortcut, where the stage's downsampling is), without dilation: AGW's and BoT's ``last_conv_stride``."""
    stage = getattr(model, "layer4", None)
    first = stage[0] if isinstance(stage, nn.Sequential) and len(stage) else None
    strided = getattr(first, "conv2" if hasattr(first, "conv3") else "conv1", None)
    if not isinstance(strided, nn.Conv2d):
        raise BackboneError(f"last_stride: {name or type(model).__name__} has no last stride to change (only "
                            f"ResNet-family backbones, with a layer4 of residual blocks, have one)")
    strided.stride = (stride, stride)
    downsample = getattr(first, "downsample", None)
    if downsample is not None:
        convolution = next((m for m in downsample.modules() if isinstance(m, nn.Conv2d)), None)
        pooling = next((m for m in downsample.modules() if isinstance(m, nn.AvgPool2d)), None)
        if pooling is not None:  # ResNet-D: the shortcut pools instead of striding
            pooling.kernel_size = pooling.stride = stride
        elif convolution is not None:
            convolution.stride = (stride, stride)


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


def measured_entry(name: str, probe_size: tuple[int, int], weights_dir: str | Path = "weights") -> BackboneEntry:
    """The line of ``reid models`` for ``name``, measured: the backbone built, counted and run at ``probe_size``,
    and the authors' weight file (when there is one) loaded into it."""
    from reid.models.pretrained import weights_status

    info = describe_backbone(name, probe_size)
    weights = weights_file(name, weights_dir)
    return BackboneEntry(name, info.params, info.macs_224, info.input_size, info.note,
                         weights_status(name, weights_dir) if isinstance(weights, Path) else weights, True)
