"""The datasets this toolkit reads: one registry, which configs, the command line and the tests consult.

Adding a dataset: write its reader (a ``ReIDDataset`` subclass with ``write_synthetic``) and add the class to
``READERS`` below, or ``register`` it at run time (a plug-in, a test). The config's ``dataset`` choices, the
command line's ``--dataset`` / ``--layout`` and the tests that go over every dataset read the registry when they
run, so nothing else names datasets.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from reid.data.base import ReIDDataset
from reid.data.folder import Folder
from reid.data.llcm import LLCM
from reid.data.regdb import RegDB
from reid.data.sysu import SYSUMM01
from reid.data.vcm import VCMHITSZ
from reid.errors import ReidError, refuse
from reid.io import directory

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


SYNTHETIC_MARKER = ".reid-synthetic"  # in the root of every dataset make_dataset writes: {"layout", "ids", "seed"}


def synthetic_layout(root: str | Path) -> str | None:
    """The layout of a synthetic dataset ``make_dataset`` wrote at ``root``, or None for anything else."""
    try:
        record = json.loads((Path(root) / SYNTHETIC_MARKER).read_text())
        return str(record["layout"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def replace_problems(out: str | Path, overwrite: bool, option: str = "--out") -> list[str]:
    """Why a synthetic dataset may not be written to ``out``: it holds one (and ``overwrite`` is not given), or it
    holds anything else, which is never replaced (a user's folder, a real dataset). Absent or empty is fine."""
    out = Path(out)
    if not os.path.lexists(out):
        return []
    if not directory(out):
        return [f"{option} {out}: is a file, not a folder"]
    try:
        entries = sorted(os.listdir(out))
    except OSError as error:
        return [f"{option} {out}: cannot be read ({error.strerror or error})"]
    if not entries:
        return []
    if synthetic_layout(out) is None:
        shown = ", ".join(entries[:5]) + (f" (+{len(entries) - 5} more)" if len(entries) > 5 else "")
        return [f"{option} {out}: holds files reid did not write ({shown}); a synthetic dataset is only written "
                f"into a new or empty folder, or over one written before"]
    if not overwrite:
        return [f"{option} {out}: already holds a synthetic dataset (pass --overwrite to replace it)"]
    return []


def make_dataset(name: str, out: str | Path, num_ids: int | None = None, seed: int = 0,
                 overwrite: bool = False) -> Path:
    """Write a synthetic dataset in ``name``'s exact on-disk layout to ``out`` and return ``out``.

    The dataset is written to a temporary sibling folder and renamed into place, so an interrupted run never
    leaves a half-written dataset behind. Its root holds a marker (``SYNTHETIC_MARKER``), so that only a dataset
    written here is ever replaced: a folder that holds anything else is refused, with or without ``overwrite``.

    Args:
        name: A registered dataset name.
        out: Dataset root to create (absent, empty, or a synthetic dataset written before).
        num_ids: Number of identities (default: the reader's ``synthetic_ids``, trains in minutes on a CPU).
        seed: Random seed; the same arguments give the same files.
        overwrite: Replace a synthetic dataset written there before.
    """
    reader = dataset_class(name)
    num_ids = reader.synthetic_ids if num_ids is None else num_ids
    if num_ids < 4:
        raise ReidError(f"--ids must be at least 4, got {num_ids}")
    out = Path(out)
    refuse(replace_problems(out, overwrite))
    staging = out.parent / f".{out.name}.partial"
    if os.path.lexists(staging) and synthetic_layout(staging) is None:
        raise ReidError(f"{staging}: is in the way of the dataset being written (reid did not make it); move it")
    try:
        shutil.rmtree(staging, ignore_errors=True)  # what an interrupted write of ours left (it has the marker)
        staging.mkdir(parents=True)
        (staging / SYNTHETIC_MARKER).write_text(json.dumps({"layout": name, "ids": num_ids, "seed": seed}) + "\n")
        reader.write_synthetic(staging, num_ids, seed)
        if directory(out):
            if synthetic_layout(out) is not None:
                shutil.rmtree(out)
            else:
                out.rmdir()  # empty (checked above): rmdir refuses anything else
        staging.rename(out)
    except OSError as error:
        shutil.rmtree(staging, ignore_errors=True)
        raise ReidError(f"{out}: cannot write the dataset ({error.strerror or error})") from None
    return out
