"""The removal rules, written out by hand from the datasets' documented protocols."""
import numpy as np
import pytest
import torch

from reid.data import DATASETS
from reid.data.protocols import CUSTOM, LLCM, PROTOCOLS, REGDB, SYSU, VCM, Protocol, get_protocol
from reid.errors import ReidError

QUERY_PIDS, QUERY_CAMIDS = [1, 1, 2], [1, 3, 3]
GALLERY_PIDS, GALLERY_CAMIDS = [1, 1, 2, 3, 1], [1, 2, 3, 2, 3]


def removed(protocol):
    return protocol.removed(QUERY_PIDS, QUERY_CAMIDS, GALLERY_PIDS, GALLERY_CAMIDS).tolist()


def test_same_identity_and_camera_is_hidden():
    expected = [[True, False, False, False, False],   # pid 1 cam 1: its own pid on cam 1
                [False, False, False, False, True],   # pid 1 cam 3: pid 1 on cam 3
                [False, False, True, False, False]]   # pid 2 cam 3: pid 2 on cam 3
    assert removed(LLCM) == removed(VCM) == expected


def test_sysu_camera_3_queries_do_not_see_camera_2():
    expected = [[False] * 5,
                [False, True, False, True, False],  # every camera-2 item, whatever its identity
                [False, True, False, True, False]]
    assert removed(SYSU) == expected


def test_regdb_hides_nothing():
    assert removed(REGDB) == [[False] * 5] * 3


def test_accepts_numpy_lists_and_tensors_and_keeps_the_gallery_device():
    as_numpy = SYSU.removed(*(np.array(v) for v in (QUERY_PIDS, QUERY_CAMIDS, GALLERY_PIDS, GALLERY_CAMIDS)))
    as_tensor = SYSU.removed(*(torch.tensor(v) for v in (QUERY_PIDS, QUERY_CAMIDS, GALLERY_PIDS, GALLERY_CAMIDS)))
    assert as_numpy.dtype == torch.bool and torch.equal(as_numpy, as_tensor) and as_tensor.shape == (3, 5)


def test_the_published_datasets_hold_their_protocol_objects():
    published = {"llcm": LLCM, "vcm": VCM, "sysu": SYSU, "regdb": REGDB}
    assert {name: DATASETS[name].protocol for name in published} == published
    assert LLCM.dedup_cmc and SYSU.dedup_cmc and not VCM.dedup_cmc and not REGDB.dedup_cmc
    assert all(reader.protocol in PROTOCOLS.values() for reader in DATASETS.values())


def test_the_custom_rule_hides_a_match_only_on_a_known_camera():
    assert CUSTOM.removed([1, 1], [-1, 2], [1, 1, 2], [-1, 2, 2]).tolist() == [[False, False, False],
                                                                         [False, True, False]]


def test_lookup_by_name():
    assert all(get_protocol(name) is protocol for name, protocol in PROTOCOLS.items())
    assert get_protocol(LLCM) is LLCM
    with pytest.raises(ReidError, match="unknown protocol 'market'"):
        get_protocol("market")


def test_whether_a_rule_hides_only_matches_is_checked_on_the_labels_evaluated():
    pids, cameras = [1, 2, 3, 1], [1, 2, 3, 6]
    assert not SYSU.hides_only_matches(pids, cameras, pids, cameras)  # a camera-3 query loses camera-2 items
    assert LLCM.hides_only_matches(pids, cameras, pids, cameras) and REGDB.hides_only_matches(pids, cameras, pids,
                                                                                              cameras)
    # a rule written tomorrow, about cameras no fixed probe would cover: checked on the cameras really there
    odd = Protocol("odd", "camera 101 for a camera-100 query", False, lambda qp, qc, gp, gc: (qc == 100) & (gc == 101))
    assert not odd.hides_only_matches([1, 2], [100, 7], [3, 1], [101, 9])
    assert odd.hides_only_matches([1, 2], [5, 7], [3, 1], [101, 9])  # no camera-100 query: nothing is hidden


def test_the_evaluator_follows_a_new_rule_as_the_per_query_oracle_does():
    from reference_metrics import evaluate_rank_reference

    from reid.metrics import evaluate_rank

    odd = Protocol("odd", "camera 101 for a camera-100 query", False, lambda qp, qc, gp, gc: (qc == 100) & (gc == 101))
    rng = np.random.default_rng(0)
    query_pids, gallery_pids = rng.integers(0, 6, 40), rng.integers(0, 6, 120)
    query_cameras, gallery_cameras = rng.choice([100, 3], 40), rng.choice([101, 4, 5], 120)
    distances = rng.random((40, 120))
    fast = evaluate_rank(distances, query_pids, gallery_pids, query_cameras, gallery_cameras, odd)
    oracle = evaluate_rank_reference(distances, query_pids, gallery_pids, query_cameras, gallery_cameras, odd)
    assert fast.mAP == pytest.approx(oracle.mAP) and fast.mINP == pytest.approx(oracle.mINP)
    np.testing.assert_allclose(fast.cmc, oracle.cmc)


@pytest.mark.parametrize("protocol", PROTOCOLS.values(), ids=PROTOCOLS)
def test_rules_that_hide_only_matches_hide_nothing_else(protocol):
    # the evaluator asks such a rule about matching pairs only: on random pairs nothing else is ever hidden
    generator = torch.Generator().manual_seed(0)
    pids, camids = torch.randint(0, 4, (300,), generator=generator), torch.randint(1, 13, (300,), generator=generator)
    removed = protocol.removed(pids, camids, pids.flip(0), camids.flip(0))
    hides_others = bool((removed & (pids.unsqueeze(1) != pids.flip(0).unsqueeze(0))).any())
    assert protocol.hides_only_matches(pids, camids, pids.flip(0), camids.flip(0)) == (not hides_others)
