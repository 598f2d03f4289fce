"""Datasets: readers that turn each layout into plain sample lists, the sampler, transforms and loaders."""
from __future__ import annotations

from pathlib import Path

from reid.data.base import ReIDDataset
from reid.data.errors import DatasetError
from reid.data.llcm import LLCM
from reid.data.regdb import RegDB
from reid.data.samples import DIRECTIONS, EvalSplit, Sample
from reid.data.sysu import SYSUMM01
from reid.data.vcm import VCMHITSZ

DATASETS: dict[str, type[ReIDDataset]] = {"llcm": LLCM, "vcm": VCMHITSZ, "sysu": SYSUMM01, "regdb": RegDB}


def load_dataset(name: str, root: str | Path, **options) -> ReIDDataset:
    """Parse the dataset ``name`` ("llcm", "vcm", "sysu", "regdb") at ``root``; raises DatasetError listing
    every problem."""
    if name not in DATASETS:
        from reid.errors import ReidError

        raise ReidError(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")
    return DATASETS[name](root, **options)


__all__ = ["DATASETS", "DIRECTIONS", "DatasetError", "EvalSplit", "LLCM", "RegDB", "ReIDDataset", "SYSUMM01",
           "Sample", "VCMHITSZ", "load_dataset"]
