"""Damaged index files of every registered layout: a reader reports a DatasetError (a ReidError), never another
exception."""
import pytest
from checks import check_fuzzed_index_files

from reid.data import DATASETS


@pytest.mark.parametrize("layout", DATASETS)
def test_damaged_index_files_give_dataset_errors(synthetic, tmp_path, layout):
    check_fuzzed_index_files(layout, synthetic(layout, 6), tmp_path)
