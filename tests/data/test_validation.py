"""The validation split: held-out training identities, searched like the test set."""
import pytest

from reid.data import load_dataset
from reid.data.validation import ValidationSet, hold_out
from reid.errors import ReidError


def test_held_out_identities_leave_the_training_set_and_depend_on_the_seed_only(synthetic):
    samples = load_dataset("llcm", synthetic("llcm", 8)).train()
    kept, held = hold_out(samples, 3, seed=5)
    assert len(kept) + len(held) == len(samples)
    held_ids = {s.pid for s in held}
    assert len(held_ids) == 3 and not held_ids & {s.pid for s in kept}
    assert all({s.modality for s in held if s.pid == pid} == {"vis", "ir"} for pid in held_ids)
    assert hold_out(list(reversed(samples)), 3, seed=5)[1] and \
        {s.pid for s in hold_out(list(reversed(samples)), 3, seed=5)[1]} == held_ids  # order does not matter
    assert any({s.pid for s in hold_out(samples, 3, seed=seed)[1]} != held_ids for seed in range(6, 12))


def test_holding_out_too_many_is_refused(synthetic):
    samples = load_dataset("llcm", synthetic("llcm", 8)).train()
    with pytest.raises(ReidError, match="val_identities: 7 is too many"):
        hold_out(samples, 7, seed=0, keep=2)
    with pytest.raises(ReidError, match="at least 4 of them"):
        hold_out(samples, 5, seed=0, keep=4)


def test_the_validation_set_searches_each_direction_with_the_datasets_protocol(synthetic):
    dataset = load_dataset("llcm", synthetic("llcm", 8))
    _, held = hold_out(dataset.train(), 3, seed=0)
    validation = ValidationSet(dataset, held)
    assert validation.protocol is dataset.protocol and validation.directions == dataset.directions
    split = validation.test_split("ir2vis")
    assert {s.modality for s in split.query} == {"ir"} and {s.modality for s in split.gallery} == {"vis"}
    assert len(split.query) + len(split.gallery) == len(held)
    reverse = validation.test_split("vis2ir")
    assert reverse.query == split.gallery and reverse.gallery == split.query
