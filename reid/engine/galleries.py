"""Galleries from samples: choose them (a dataset split or image files), embed them and index them."""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from reid.data.base import IMAGE_SUFFIXES, ReIDDataset
from reid.data.images import load_image
from reid.data.samples import Direction, Modality, Sample, Split
from reid.engine.inference import Embedder
from reid.errors import ReidError
from reid.index import Gallery, GalleryError, IndexSettings
from reid.io import directory, regular_file


def sample_metadata(sample: Sample, label: str | None = None, timestamp: int | None = None) -> dict:
    """The metadata row of a sample: absolute paths (so the item is found again from any directory), None for the
    pid and camid of unlabelled images, and when it was seen (seconds since 1970 UTC) when that is known."""
    path = [os.path.abspath(p) for p in sample.path] if sample.is_tracklet else os.path.abspath(sample.path)
    return {"path": path, "pid": sample.pid if sample.pid >= 0 else None,
            "camid": sample.camid if sample.camid >= 0 else None, "modality": sample.modality, "label": label,
            "timestamp": timestamp}


def image_modality(image: np.ndarray) -> Modality:
    """Infrared if a decoded (H, W, 3) image is grayscale (all channels equal), else visible."""
    return "ir" if (image[..., 0] == image[..., 1]).all() and (image[..., 1] == image[..., 2]).all() else "vis"


def guess_modality(path: str | Path) -> Modality:
    """Infrared if the image file is grayscale, else visible (``image_modality``)."""
    return image_modality(load_image(path))


def image_samples(paths: Sequence[str | Path], modality: Modality | None = None) -> list[Sample]:
    """Unlabelled samples for image files and folders (searched recursively, sorted)."""
    files: list[Path] = []
    for path in map(Path, paths):
        if directory(path):
            files += sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and regular_file(p))
        elif regular_file(path):
            files.append(path)
        elif os.path.lexists(path):
            raise GalleryError(f"{path}: not a regular file or folder")
        else:
            raise GalleryError(f"{path}: no such image or folder")
    if not files:
        raise GalleryError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {', '.join(map(str, paths))}")
    return [Sample(str(f), -1, -1, modality or guess_modality(f)) for f in files]


def dataset_samples(dataset: ReIDDataset, split: Split | str, direction: Direction = "ir2vis", trial: int = 0,
                    modality: Modality | None = None) -> list[Sample]:
    """The distinct samples of a dataset split (the test splits of ``direction`` and ``trial``; ``direction``
    falls back to the dataset's first when it has no such search), optionally of one modality."""
    split = Split(split)
    test = dataset.test_split(direction if direction in dataset.directions else dataset.directions[0], trial)
    chosen = {Split.gallery: lambda: test.gallery, Split.query: lambda: test.query,
              Split.train: lambda: dataset.train(trial),
              Split.all: lambda: dataset.train(trial) + test.query + test.gallery}[split]()
    if modality is not None:
        chosen = [s for s in chosen if s.modality == modality]
    if not chosen:
        raise ReidError(f"no {modality or ''} samples in the {split.value} split of {dataset.root}".replace("  ", " "))
    return list(dict.fromkeys(chosen))


def build_gallery(embedder: Embedder, samples: Sequence[Sample], settings: IndexSettings | None = None,
                  progress: Callable[[int], None] | None = None, source: dict | None = None) -> Gallery:
    """Embed ``samples`` and index them, with the embedder's identity (and ``source``, e.g. the dataset the
    samples came from) in the manifest."""
    return Gallery.build(embedder.embeddings(samples, progress), [sample_metadata(s) for s in samples],
                         embedder.backbone, settings, embedder.digest, use_gpu=embedder.device.type == "cuda",
                         source=source)
