"""Small gallery samples for rank-list tests (tests/test_retrieval.py, tests/test_visualize.py): image files of one
grey level each, and four gallery samples whose features put them farther from the query one by one."""
import numpy as np
import pytest
import torch
from PIL import Image

from reid.data.samples import Sample


def image_file(tmp_path, name, value):
    path = tmp_path / f"{name}.png"
    Image.fromarray(np.full((20, 10, 3), value, np.uint8)).save(path)
    return str(path)


@pytest.fixture
def four_samples(tmp_path):
    """(samples, features) of four visible gallery items: identities 1, 2, 1, 3 on cameras 1, 2, 2, 1."""
    samples = [Sample(image_file(tmp_path, f"g{i}", 40 * i), pid, cam, "vis")
               for i, (pid, cam) in enumerate([(1, 1), (2, 2), (1, 2), (3, 1)])]
    # distances to the query grow with the index: features along one axis
    features = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.8, 0.2], [0.7, 0.3]])
    return samples, features
