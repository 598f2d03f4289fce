import shutil

import pytest

from reid.data import make_dataset


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory):
    """Pristine synthetic roots, one per layout, made once; tests that damage a root copy it first."""
    made = {}

    def root(layout: str, ids: int = 10):
        if (layout, ids) not in made:
            made[(layout, ids)] = make_dataset(layout, tmp_path_factory.mktemp(layout) / layout, ids, seed=1)
        return made[(layout, ids)]

    return root


@pytest.fixture
def damaged(synthetic, tmp_path):
    """A private copy of a synthetic root, to break."""
    def copy(layout: str):
        target = tmp_path / layout
        shutil.copytree(synthetic(layout), target)
        return target

    return copy
