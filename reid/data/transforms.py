"""Augmentation pipelines (albumentations) and tracklet frame sampling.

A ``Pipeline`` resizes every frame to the model's input, then makes one random draw of the augmentations for
the whole sample, so the frames of a tracklet are flipped, cropped and erased alike.
"""
from __future__ import annotations

from collections.abc import Sequence

import albumentations as A
import cv2
import numpy as np
import torch
from PIL import Image

from reid.settings import AugmentConfig


class ChannelExchange(A.ImageOnlyTransform):
    """CAJ's channel augmentation: replicate one random RGB channel, or the grayscale image, to all three."""

    def get_params(self) -> dict[str, int]:
        return {"channel": self.py_random.randint(0, 3)}  # 0, 1, 2: that channel; 3: grayscale

    def apply(self, img: np.ndarray, channel: int = 3, **params) -> np.ndarray:
        if channel == 3:
            gray = img[..., 0] * 0.299 + img[..., 1] * 0.587 + img[..., 2] * 0.114
            gray = np.rint(gray).astype(img.dtype) if img.dtype == np.uint8 else gray.astype(img.dtype)
            return np.repeat(gray[..., None], 3, axis=-1)
        return np.repeat(img[..., channel:channel + 1], 3, axis=-1)

    def apply_to_images(self, images: np.ndarray, channel: int = 3, **params) -> np.ndarray:
        return self.apply(images, channel)


class Pipeline:
    """Frames -> float tensor (T, 3, H, W): resize each frame, then one augmentation draw for all of them."""

    def __init__(self, config: AugmentConfig, augment: A.Compose) -> None:
        self.config = config
        self.augment = augment

    def resize(self, frame: np.ndarray) -> np.ndarray:
        size = (self.config.width, self.config.height)
        if self.config.resize == "lanczos":
            return np.asarray(Image.fromarray(frame).resize(size, Image.Resampling.LANCZOS))
        return cv2.resize(frame, size, interpolation=cv2.INTER_LINEAR)

    def __call__(self, frames: Sequence[np.ndarray]) -> torch.Tensor:
        resized = np.stack([self.resize(frame) for frame in frames])
        out = self.augment(images=resized)["images"]
        return torch.from_numpy(np.ascontiguousarray(np.asarray(out).transpose(0, 3, 1, 2)))

    def set_random_seed(self, seed: int) -> None:
        self.augment.set_random_seed(seed)


def train_pipelines(config: AugmentConfig) -> dict[str, Pipeline]:
    """Training pipelines by modality; visible images also get CAJ's channel augmentation."""
    def build(modality: str) -> Pipeline:
        steps = [
            A.PadIfNeeded(config.height + 2 * config.pad, config.width + 2 * config.pad,
                          border_mode=cv2.BORDER_CONSTANT, fill=0),
            A.RandomCrop(config.height, config.width),
            A.HorizontalFlip(p=config.flip),
        ]
        if modality == "vis" and config.channel_augment > 0:
            steps.append(ChannelExchange(p=config.channel_augment))
        steps += [A.Normalize(config.mean, config.std), A.Erasing(p=config.erasing, fill=0)]
        return Pipeline(config, A.Compose(steps))

    return {"vis": build("vis"), "ir": build("ir")}


def eval_pipeline(config: AugmentConfig) -> Pipeline:
    return Pipeline(config, A.Compose([A.Normalize(config.mean, config.std)]))


def frame_indices(num_frames: int, seq_len: int, rng: np.random.Generator | None = None) -> list[int]:
    """Which frames represent a tracklet of ``num_frames`` by ``seq_len`` frames.

    Training (``rng`` given): restricted random sampling, one random frame from each of seq_len equal chunks.
    Testing: evenly spaced, the first frame of each chunk. Short tracklets repeat their last frame.
    """
    if num_frames < seq_len:
        return list(range(num_frames)) + [num_frames - 1] * (seq_len - num_frames)
    chunks = np.array_split(np.arange(num_frames), seq_len)
    if rng is None:
        return [int(chunk[0]) for chunk in chunks]
    return [int(rng.choice(chunk)) for chunk in chunks]
