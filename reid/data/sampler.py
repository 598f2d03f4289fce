"""The cross-modality identity sampler: P identities per batch, each with K visible and K infrared samples."""
from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

from reid.data.samples import MODALITIES, Sample
from reid.errors import ReidError


class CrossModalityIdentitySampler(Sampler[list[tuple[int, int]]]):
    """Batch sampler over a training list of both modalities (as in AGW / DEEN's IdentitySampler).

    Every batch holds ``identities`` distinct identities and, for each, ``instances`` visible then
    ``instances`` infrared samples drawn with replacement, so a batch has 2 * identities * instances items.
    An epoch has len(larger modality) // (identities * instances * world_size) + 1 batches. Identities with no
    sample in one of the modalities cannot form pairs and are not drawn.

    Batches are lists of (index, draw_seed): the dataset seeds frame sampling and augmentation with draw_seed,
    so an epoch's data is a function of (seed, epoch) alone, whatever the worker scheduling, and a resumed run
    sees exactly the data an uninterrupted one would.

    Under torchrun each rank makes the same draws (same seed and epoch) and keeps its own block of
    identities, so ranks see disjoint identities within every step and agree on the epoch length.

    Args:
        samples: Training samples.
        identities: P, identities per batch (per rank).
        instances: K, samples per identity and modality.
        seed: Base seed; batches are a function of (seed, epoch).
        rank: This process's rank.
        world_size: Number of processes.
    """

    def __init__(
            self,
            samples: Sequence[Sample],
            identities: int = 8,
            instances: int = 4,
            seed: int = 0,
            rank: int = 0,
            world_size: int = 1,
    ) -> None:
        self.by_modality: dict[str, dict[int, list[int]]] = {m: {} for m in MODALITIES}
        for index, sample in enumerate(samples):
            self.by_modality[sample.modality].setdefault(sample.pid, []).append(index)
        self.pids = np.array(sorted(set(self.by_modality["vis"]) & set(self.by_modality["ir"])))
        self.identities, self.instances = identities, instances
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.epoch = 0
        if len(self.pids) < identities * world_size:
            fits = len(self.pids) // world_size
            fix = f"lower batch_identities to {fits} or fewer (--set batch_identities={fits})" if fits >= 2 else \
                "the training set is too small for cross-modality batches"
            raise ReidError(f"the sampler needs {identities * world_size} identities with both visible and infrared "
                            f"samples per step, the training set has {len(self.pids)}; {fix}")
        larger = max(sum(map(len, self.by_modality[m].values())) for m in MODALITIES)
        self.num_batches = larger // (identities * instances * world_size) + 1

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        per_step = self.identities * self.world_size
        for _ in range(self.num_batches):
            chosen = rng.choice(self.pids, per_step, replace=False)
            # every rank makes every draw, so all ranks stay in step; each keeps its own block of identities
            indices = [np.concatenate([rng.choice(self.by_modality["vis"][pid], self.instances),
                                       rng.choice(self.by_modality["ir"][pid], self.instances)]) for pid in chosen]
            seeds = rng.integers(0, 2 ** 63, (per_step, 2 * self.instances))
            block = slice(self.rank * self.identities, (self.rank + 1) * self.identities)
            yield [(int(i), int(s)) for row, row_seeds in zip(indices[block], seeds[block], strict=True)
                   for i, s in zip(row, row_seeds, strict=True)]
