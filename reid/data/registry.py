"""The datasets this toolkit reads: one registry, which configs, the command line and the tests consult.

Adding a dataset: write its reader (a ``ReIDDataset`` subclass with ``write_synthetic``) and add the class to
``READERS`` below, or ``register`` it at run time (a plug-in, a test). The config's ``dataset`` choices, the
command line's ``--dataset`` / ``--layout`` and the tests that go over every dataset read the registry when they
run, so nothing else names datasets.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from reid.data.base import ReIDDataset
from reid.data.folder import Folder
from reid.data.llcm import LLCM
from reid.data.regdb import RegDB
from reid.data.sysu import SYSUMM01
from reid.data.vcm import VCMHITSZ
from reid.errors import ReidError

READERS: tuple[type[ReIDDataset], ...] = (LLCM, VCMHITSZ, SYSUMM01, RegDB, Folder)
DATASETS: dict[str, type[ReIDDataset]] = {reader.name: reader for reader in READERS}


def register(reader: type[ReIDDataset]) -> type[ReIDDataset]:
    """Add a reader to the registry under its ``name`` (usable as a class decorator); returns it."""
    if reader.name in DATASETS and DATASETS[reader.name] is not reader:
        raise ValueError(f"a dataset named {reader.name!r} is registered already ({DATASETS[reader.name].__name__})")
    DATASETS[reader.name] = reader
    return reader


def unregister(name: str) -> None:
    DATASETS.pop(name, None)


def dataset_help() -> str:
    """The registered datasets as the command line's help lists them."""
    return ", ".join(f"{reader.name} ({reader.title})" for reader in DATASETS.values())


def dataset_class(name: str) -> type[ReIDDataset]:
    """The reader registered as ``name``; a ReidError lists the known names."""
    name = getattr(name, "value", name)
    if name not in DATASETS:
        raise ReidError(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")
    return DATASETS[name]


def load_dataset(name: str, root: str | Path, strict: bool = True, mode: str | None = None) -> ReIDDataset:
    """Parse the dataset ``name`` at ``root``; raises DatasetError listing every problem.

    Args:
        name: A registered name (see ``DATASETS``).
        root: Dataset root.
        strict: Raise on any problem; otherwise keep them in ``problems`` (for ``reid data check``).
        mode: Search mode, for datasets that have several (SYSU-MM01: "all" or "indoor").
    """
    reader = dataset_class(name)
    # one option serves every dataset with modes; the others have a single one and ignore it
    return reader(root, strict=strict, mode=mode if len(reader.modes) > 1 else None)


def make_dataset(name: str, out: str | Path, num_ids: int | None = None, seed: int = 0,
                 overwrite: bool = False) -> Path:
    """Write a synthetic dataset in ``name``'s exact on-disk layout to ``out`` and return ``out``.

    The dataset is written to a temporary sibling folder and renamed into place, so an interrupted run never
    leaves a half-written dataset behind.

    Args:
        name: A registered dataset name.
        out: Dataset root to create.
        num_ids: Number of identities (default: the reader's ``synthetic_ids``, trains in minutes on a CPU).
        seed: Random seed; the same arguments give the same files.
        overwrite: Replace an existing ``out``.
    """
    reader = dataset_class(name)
    num_ids = reader.synthetic_ids if num_ids is None else num_ids
    if num_ids < 4:
        raise ReidError(f"--ids must be at least 4, got {num_ids}")
    out = Path(out)
    if out.exists() and not overwrite:
        raise ReidError(f"{out} already exists (pass --overwrite to replace it)")
    staging = out.parent / f".{out.name}.partial"
    try:
        shutil.rmtree(staging, ignore_errors=True)
        reader.write_synthetic(staging, num_ids, seed)
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    except OSError as error:
        shutil.rmtree(staging, ignore_errors=True)
        raise ReidError(f"{out}: cannot write the dataset ({error.strerror or error})") from None
    return out
