"""What every dataset reader must do, as functions: the parametrised tests run them for every registered dataset,
and test_registry.py runs them for a reader it registers itself, so a new reader is tested with no other edit."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from reid.cli import app
from reid.config import make_config
from reid.data import load_dataset, make_dataset
from reid.data.base import IMAGE_SUFFIXES
from reid.data.protocols import PROTOCOLS
from reid.data.registry import dataset_class
from reid.errors import ReidError


def check_synthetic_layout(name: str, root: Path) -> None:
    """The synthetic copy parses cleanly, its images decode, and it offers training and test samples of both
    modalities under a registered protocol."""
    reader = dataset_class(name)
    assert reader.protocol in PROTOCOLS.values(), "a dataset's protocol is one of reid.data.protocols"
    dataset = load_dataset(name, root)
    dataset.verify_images()
    train = dataset.train()
    assert {s.modality for s in train} == {"vis", "ir"}
    for direction in dataset.directions:
        split = dataset.test_split(direction)
        assert split.query and split.gallery and split.direction == direction
    assert set(dataset.statistics()) == {"dataset", "train", "query", "gallery"}


def index_files(root: Path) -> list[Path]:
    """The files of a layout that are not images: its index files."""
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() not in IMAGE_SUFFIXES)


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    """One of: flip bytes, cut, duplicate a slice, insert junk (text or binary), swap fields, empty."""
    kind = rng.integers(6)
    if kind == 0 and data:
        array = bytearray(data)
        for position in rng.integers(0, len(array), max(1, len(array) // 50)):
            array[position] = int(rng.integers(0, 256))
        return bytes(array)
    if kind == 1:
        return data[:int(rng.integers(0, len(data) + 1))]
    if kind == 2 and data:
        start = int(rng.integers(0, len(data)))
        return data + data[start:start + 200]
    if kind == 3:
        junk = rng.choice([b"-1 -1 -1", b"\xff\xfe\x00", b"1 2", b"a,b,,c", b"9999999999999999999 1", b"../../x 1",
                           b"0001M3D1T1F1.jpg", b"2 5 3 1 1", b"\n\n\n", b"\t \t", b"x.jpg,1,,plasma,test"])
        position = int(rng.integers(0, len(data) + 1))
        return data[:position] + bytes(junk) + data[position:]
    if kind == 4:
        lines = data.split(b"\n")
        rng.shuffle(lines)
        return b"\n".join(line[::-1] if rng.random() < 0.3 else line for line in lines)
    return b""


def check_fuzzed_index_files(name: str, pristine: Path, work: Path, attempts: int = 25) -> None:
    """Damaged index files are a DatasetError (a ReidError), never another exception; most damage is caught."""
    rng = np.random.default_rng(sum(map(ord, name)))
    files = [p.relative_to(pristine) for p in index_files(pristine)]
    assert files, f"{name}'s layout has no index file to damage"
    refused = 0
    for attempt in range(attempts):
        root = work / f"{name}{attempt}"
        shutil.copytree(pristine, root)
        for relative in rng.choice(files, min(len(files), int(rng.integers(1, 3))), replace=False):
            (root / relative).write_bytes(mutate((root / relative).read_bytes(), rng))
        try:
            dataset = load_dataset(name, root)
            for direction in dataset.directions:
                dataset.test_split(direction, 0)
            dataset.train()
        except ReidError:
            refused += 1
        shutil.rmtree(root)
    assert refused >= attempts * 0.4, refused  # the damage is real, and reported as such


def check_command_line(name: str, work: Path) -> None:
    """`reid data make-demo` writes the layout and `reid data check --json` reads it back; a config names it."""
    runner = CliRunner()
    root = work / f"{name}-cli"
    made = runner.invoke(app, ["data", "make-demo", "--layout", name, "--out", str(root), "--ids", "6"])
    assert made.exit_code == 0, made.output
    checked = runner.invoke(app, ["data", "check", "--dataset", name, "--root", str(root), "--json"])
    assert checked.exit_code == 0, checked.output
    assert json.loads(checked.stdout)["dataset"] == name
    assert make_config({"dataset": name, "data_root": str(root)}).dataset == name


def write_synthetic(name: str, work: Path) -> Path:
    return make_dataset(name, work / name, 10, seed=1)
