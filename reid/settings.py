"""The setting types that configs, the command line and the engine share, without importing torch.

Each choice is a ``Literal`` (what pydantic validates and type checkers read) with the tuple of its values (what
the command line offers), so the three layers name the same values and the command line answers ``--help``
without loading torch, timm or albumentations.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from reid.errors import ReidError

DeviceName = Literal["auto", "cpu", "cuda"]
AmpMode = Literal["auto", "off", "bf16", "fp16"]
# torch.compile: "auto" compiles where it pays (see reid.engine.compile), the others are torch.compile's modes
CompileMode = Literal["auto", "off", "default", "max-autotune", "reduce-overhead"]
ResizeMethod = Literal["bilinear", "lanczos"]
# what runs a model that embeds: auto picks ONNX Runtime where it can (reid.engine.onnx), else PyTorch
EngineName = Literal["auto", "torch", "onnxruntime"]

DEVICES: tuple[DeviceName, ...] = get_args(DeviceName)
AMP_MODES: tuple[AmpMode, ...] = get_args(AmpMode)
COMPILE_MODES: tuple[CompileMode, ...] = get_args(CompileMode)
RESIZE_METHODS: tuple[ResizeMethod, ...] = get_args(ResizeMethod)
ENGINES: tuple[EngineName, ...] = get_args(EngineName)

# ImageNet's channel statistics (timm.data.IMAGENET_DEFAULT_MEAN / _STD; a test holds them equal)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class AugmentConfig:
    """Input and augmentation settings (the flat ``input_*`` and ``augment_*`` keys of an experiment config).

    Attributes:
        height: Model input height.
        width: Model input width.
        pad: Zero padding before the random crop back to height x width.
        flip: Horizontal flip probability.
        erasing: Random erasing probability (after normalisation, filled with 0 = the mean).
        channel_augment: Probability of CAJ's channel augmentation on visible images: all three channels replaced
            by one randomly chosen channel, or by the grayscale image (Ye et al., ICCV 2021).
        resize: How images are resized to the input: "bilinear" (OpenCV's, without antialiasing) or "lanczos"
            (PIL's antialiasing filter, as AGW's data preparation resizes).
        mean: Normalisation mean.
        std: Normalisation standard deviation.
    """

    height: int = 288
    width: int = 144
    pad: int = 10
    flip: float = 0.5
    erasing: float = 0.5
    channel_augment: float = 0.5
    resize: ResizeMethod = "bilinear"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD


def parse_size(text: str, option: str = "--size") -> tuple[int, int]:
    """'288x144' -> (288, 144); a ReidError names ``option`` otherwise."""
    try:
        height, width = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise ReidError(f"{option} must look like HEIGHTxWIDTH (e.g. 288x144), got {text!r}") from None
    if height < 1 or width < 1:
        raise ReidError(f"{option} must be positive, got {text!r}")
    return height, width
