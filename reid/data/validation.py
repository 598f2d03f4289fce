"""A validation set held out from the training identities, so that best.pt is not chosen on the test set.

The official protocols have no validation split: the VI-ReID papers (and AGW, DEEN, MITML's code) evaluate on the
test set during training and keep the best epoch, which selects on the test set. With ``val_identities: N`` in a
config, N training identities (drawn with the run's seed among those seen in both modalities) leave the training
set and become a validation set, searched like the test set in each of the dataset's directions: the queries are
one modality's samples of those identities, the gallery every sample of the other modality, and the dataset's
protocol decides which gallery items a query does not see and how the CMC counts. ``best.pt`` is then the best
epoch on it.
"""
from __future__ import annotations

import random
from collections.abc import Sequence

from reid.data.base import ReIDDataset
from reid.data.samples import Direction, EvalSplit, Sample
from reid.errors import ReidError


def hold_out(samples: Sequence[Sample], identities: int, seed: int, keep: int = 2) -> tuple[list[Sample], list[Sample]]:
    """(training samples, held-out samples): ``identities`` identities seen in both modalities, drawn with
    ``seed``, leave the training set. At least ``keep`` identities must remain to train on."""
    both: dict[int, set[str]] = {}
    for sample in samples:
        both.setdefault(sample.pid, set()).add(sample.modality)
    candidates = sorted(pid for pid, modalities in both.items() if len(modalities) == 2)
    if identities > len(candidates) or len(both) - identities < keep:
        raise ReidError(f"val_identities: {identities} is too many; the training set has {len(both)} identities "
                        f"({len(candidates)} in both modalities), and training needs at least {keep} of them")
    held = set(random.Random(seed).sample(candidates, identities))
    return [s for s in samples if s.pid not in held], [s for s in samples if s.pid in held]


class ValidationSet:
    """Held-out training identities, evaluated as the dataset's test set is (what ``evaluate_dataset`` reads)."""

    num_trials = 1
    trains_per_trial = False

    def __init__(self, dataset: ReIDDataset, samples: Sequence[Sample]) -> None:
        self.name, self.title = f"{dataset.name} validation", f"{dataset.title} validation"
        self.protocol, self.directions, self.tracklets = dataset.protocol, dataset.directions, dataset.tracklets
        self.samples = list(samples)
        self.identities = len({s.pid for s in self.samples})

    def test_split(self, direction: Direction = "ir2vis", trial: int = 0) -> EvalSplit:
        query_modality = "ir" if direction == "ir2vis" else "vis"
        return EvalSplit([s for s in self.samples if s.modality == query_modality],
                         [s for s in self.samples if s.modality != query_modality], direction, 0)
