"""Galleries from samples: embed them with a model and index them (reid.index)."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from reid.data.base import IMAGE_SUFFIXES
from reid.data.images import load_image
from reid.data.samples import Modality, Sample
from reid.data.transforms import Pipeline
from reid.engine.evaluate import extract_features
from reid.index import Gallery, GalleryError, IndexSettings


def sample_metadata(sample: Sample, label: str | None = None) -> dict:
    """The metadata row of a sample (pid and camid are None for unlabelled images)."""
    path = list(sample.path) if sample.is_tracklet else sample.path
    return {"path": path, "pid": sample.pid if sample.pid >= 0 else None,
            "camid": sample.camid if sample.camid >= 0 else None, "modality": sample.modality, "label": label}


def guess_modality(path: str | Path) -> Modality:
    """Infrared if the image is grayscale (all channels equal), else visible."""
    image = load_image(path)
    return "ir" if (image[..., 0] == image[..., 1]).all() and (image[..., 1] == image[..., 2]).all() else "vis"


def image_samples(paths: Sequence[str | Path], modality: Modality | None = None) -> list[Sample]:
    """Unlabelled samples for image files and folders (searched recursively, sorted)."""
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.is_file():
            files.append(path)
        else:
            raise GalleryError(f"{path}: no such image or folder")
    if not files:
        raise GalleryError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {', '.join(map(str, paths))}")
    return [Sample(str(f), -1, -1, modality or guess_modality(f)) for f in files]


def embed_samples(model: nn.Module, samples: Sequence[Sample], pipeline: Pipeline, batch_size: int = 64,
                  device: torch.device | str = "cpu", seq_len: int = 6,
                  progress: Callable[[int], None] | None = None) -> np.ndarray:
    """L2-normalised retrieval embeddings of samples, as float32."""
    features = extract_features(model, samples, pipeline, batch_size, device, seq_len, progress=progress)
    return torch.nn.functional.normalize(features, dim=1).numpy()


def build_gallery(model: nn.Module, samples: Sequence[Sample], pipeline: Pipeline, backbone: str,
                  checkpoint_digest: str | None, settings: IndexSettings, batch_size: int = 64,
                  device: torch.device | str = "cpu", seq_len: int = 6,
                  progress: Callable[[int], None] | None = None) -> Gallery:
    embeddings = embed_samples(model, samples, pipeline, batch_size, device, seq_len, progress)
    return Gallery.build(embeddings, [sample_metadata(s) for s in samples], backbone, settings, checkpoint_digest,
                         use_gpu=torch.device(device).type == "cuda")
