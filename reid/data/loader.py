"""torch Datasets over sample lists, and DataLoaders that keep two CPU cores (or a GPU) busy."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from reid.data.images import load_image
from reid.data.samples import Sample
from reid.data.transforms import Pipeline, frame_indices
from reid.threads import usable_cores


class SampleDataset(Dataset):
    """Items (images, pid, camid, is_infrared) for a sample list.

    ``images`` is (3, H, W) for an image and (seq_len, 3, H, W) for a tracklet. Keys are indices, or
    (index, draw_seed) pairs from the training sampler: the draw seed fixes the frame choice and the
    augmentation of that draw, so training data does not depend on which worker loads it.

    Args:
        samples: The samples.
        pipelines: One pipeline for every sample, or one per modality ("vis", "ir").
        seq_len: Frames per tracklet (tracklets only).
        train: Restricted random frame sampling and seeded augmentation (else evenly spaced frames).
    """

    def __init__(
            self,
            samples: Sequence[Sample],
            pipelines: Pipeline | dict[str, Pipeline],
            seq_len: int = 6,
            train: bool = False,
    ) -> None:
        self.samples = list(samples)
        self.pipelines = pipelines if isinstance(pipelines, dict) else {"vis": pipelines, "ir": pipelines}
        self.seq_len, self.train = seq_len, train

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, int, int, bool]:
        index, draw_seed = key if isinstance(key, tuple) else (key, index_seed(key))
        sample = self.samples[index]
        pipeline = self.pipelines[sample.modality]
        frames = sample.frames
        if self.train:
            pipeline.set_random_seed(draw_seed % 2 ** 32)
        if sample.is_tracklet:
            rng = np.random.default_rng(draw_seed) if self.train else None
            frames = [frames[i] for i in frame_indices(len(frames), self.seq_len, rng)]
        images = pipeline([load_image(path) for path in frames])
        return (images if sample.is_tracklet else images[0]), sample.pid, sample.camid, sample.modality == "ir"


def index_seed(index: int) -> int:
    """A fixed seed for keys given without one."""
    return int(np.random.default_rng(index).integers(0, 2 ** 63))


def default_workers(device: torch.device | str = "cpu") -> int:
    """Loading workers when none are asked for: on a GPU every usable core, up to 16 (a GPU trains AttNet-T1 at
    thousands of images per second; the pipeline gives about 250 per worker); on a CPU one per core up to 4
    (``reid.threads.plan`` asks for one on a busy machine)."""
    return min(16 if torch.device(device).type == "cuda" else 4, usable_cores())


def make_loader(
        dataset: SampleDataset,
        batch_size: int | None = None,
        batch_sampler: Sampler[list[int]] | None = None,
        num_workers: int | None = None,
        device: torch.device | str = "cpu",
        generator: torch.Generator | None = None,
) -> DataLoader:
    """A DataLoader with persistent workers, prefetching and pinned memory on CUDA.

    ``generator`` seeds the workers without drawing from (and so shifting) the global torch RNG.
    """
    num_workers = default_workers(device) if num_workers is None else num_workers
    batching = dict(batch_sampler=batch_sampler) if batch_sampler is not None else dict(batch_size=batch_size)
    return DataLoader(
        dataset,
        **batching,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        prefetch_factor=4 if num_workers > 0 else None,
        pin_memory=torch.device(device).type == "cuda",
        generator=generator,
    )
