"""Datasets: readers that turn each layout into plain sample lists, the sampler, transforms and loaders."""
from __future__ import annotations

from reid.data.base import ReIDDataset
from reid.data.errors import DatasetError
from reid.data.llcm import LLCM
from reid.data.regdb import RegDB
from reid.data.registry import DATASETS, load_dataset, make_dataset
from reid.data.samples import DIRECTIONS, EvalSplit, Sample
from reid.data.sysu import SYSUMM01
from reid.data.vcm import VCMHITSZ

__all__ = ["DATASETS", "DIRECTIONS", "DatasetError", "EvalSplit", "LLCM", "RegDB", "ReIDDataset", "SYSUMM01",
           "Sample", "VCMHITSZ", "load_dataset", "make_dataset"]
