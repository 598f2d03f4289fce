"""Damaged index files of every layout: a reader reports a DatasetError (a ReidError), never another exception."""
import shutil

import numpy as np
import pytest

from reid.data import DATASETS, load_dataset
from reid.errors import ReidError

INDEX_FILES = {"llcm": ["idx/train_vis.txt", "idx/train_nir.txt", "idx/test_id.txt"],
               "vcm": ["info/train_name.txt", "info/track_train_info.txt", "info/test_name.txt",
                       "info/track_test_info.txt", "info/query_IDX.txt"],
               "sysu": ["exp/train_id.txt", "exp/val_id.txt", "exp/test_id.txt"],
               "regdb": ["idx/train_visible_1.txt", "idx/test_thermal_1.txt"]}


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
                           b"0001M3D1T1F1.jpg", b"2 5 3 1 1", b"\n\n\n", b"\t \t"])
        position = int(rng.integers(0, len(data) + 1))
        return data[:position] + bytes(junk) + data[position:]
    if kind == 4:
        lines = data.split(b"\n")
        rng.shuffle(lines)
        return b"\n".join(line[::-1] if rng.random() < 0.3 else line for line in lines)
    return b""


@pytest.mark.parametrize("layout", DATASETS)
def test_damaged_index_files_give_dataset_errors(synthetic, tmp_path, layout):
    pristine = synthetic(layout, 6)
    rng = np.random.default_rng(list(DATASETS).index(layout))
    outcomes = {"parsed": 0, "refused": 0}
    for attempt in range(25):
        root = tmp_path / f"{layout}{attempt}"
        shutil.copytree(pristine, root)
        for relative in rng.choice(INDEX_FILES[layout], int(rng.integers(1, 3)), replace=False):
            (root / relative).write_bytes(mutate((root / relative).read_bytes(), rng))
        try:
            dataset = load_dataset(layout, root)
            for direction in dataset.directions:
                dataset.test_split(direction, 0)
            dataset.train()
            outcomes["parsed"] += 1
        except ReidError:
            outcomes["refused"] += 1
        shutil.rmtree(root)
    assert outcomes["refused"] >= 10, outcomes  # the damage is real, and reported as such
