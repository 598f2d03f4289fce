"""The recorded backbone figures are what measuring gives (so `reid models` can answer at once)."""
import pytest

from reid.catalogue import FIXED_SIZE, PAPER_BACKBONES, RECORDED, RECORDED_PROBE, recorded_entry, weights_file


def test_every_listed_backbone_is_recorded():
    assert set(PAPER_BACKBONES) == set(RECORDED) and set(FIXED_SIZE) <= set(RECORDED)


@pytest.mark.slow
@pytest.mark.parametrize("name", PAPER_BACKBONES)
def test_the_record_equals_a_measurement(name):
    from reid.models.backbones import measured_entry

    measured = measured_entry(name, RECORDED_PROBE, "no-weights-here")
    recorded = recorded_entry(name, RECORDED_PROBE, measured.weights)
    assert (recorded.params, recorded.macs_224) == (measured.params, measured.macs_224)
    assert (recorded.input_size, recorded.note) == (measured.input_size, measured.note)


def test_other_sizes_are_not_claimed_without_a_measurement():
    entry = recorded_entry("attnet_t1", (256, 128), None)
    assert entry.input_size is None and entry.cells()[3] == "not checked (--measure)"
    fixed = recorded_entry("maxvit_tiny_tf_224", (256, 128), None)
    assert fixed.input_size == (224, 224) and "needs a fixed input size" in fixed.note
    assert recorded_entry("not_recorded", RECORDED_PROBE, None) is None


def test_the_weights_column(tmp_path):
    assert weights_file("attnet_t1", tmp_path) == f"missing: {tmp_path / 'AttNet_T1.pth'}"
    (tmp_path / "AttNet_T1.pth").write_bytes(b"x")
    assert weights_file("attnet_t1", tmp_path) == tmp_path / "AttNet_T1.pth"  # to be loaded and checked
    assert weights_file("resnet50", tmp_path) is None and weights_file("atconv_swin_tiny", tmp_path).startswith("none")
