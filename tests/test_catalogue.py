"""The recorded backbone figures (so `reid models` can answer at once) are the published ones, and a measurement
with whatever timm and torch are installed agrees with them.

Parameter counts are facts of an architecture: they are checked against what the spec (AttNet) or the authors
publish (their papers, their releases, timm's model cards), at the precision they publish. MAC counts depend on
the counter and on how a library release implements an operation (fused attention, the order of a projection),
so a measurement is held to the record within a few percent, not to the digit.
"""
import pytest

from reid.catalogue import FIXED_SIZE, PAPER_BACKBONES, RECORDED, RECORDED_PROBE, recorded_entry, weights_file

# name -> (parameters with the 1000-class head, how far a count may be from it, where it is published): an exact
# count where the source gives one, else half a unit of its last digit
PUBLISHED = {
    "attnet_xxs": (2_854_000, 500, "the spec's variant table: 2.854M"),
    "attnet_xs": (5_555_000, 500, "the spec's variant table: 5.555M"),
    "attnet_s": (7_681_000, 500, "the spec's variant table: 7.681M"),
    "attnet_t1": (13_715_000, 500, "the spec's variant table: 13.715M"),
    "attnet_t2": (27_011_000, 500, "the spec's variant table: 27.011M"),
    "attnet_t3": (49_176_000, 500, "the spec's variant table: 49.176M"),
    "attnet_t4": (87_320_000, 500, "the spec's variant table: 87.320M"),
    "resnet50": (25_557_032, 0, "torchvision's ResNet50 weights: 25,557,032"),
    "convnext_tiny": (28_589_128, 0, "torchvision's ConvNeXt-T weights: 28,589,128"),
    "swin_tiny_patch4_window7_224": (28_288_354, 0, "torchvision's Swin-T weights: 28,288,354"),
    "pvt_v2_b1": (14_000_000, 50_000, "the PVTv2 paper: 14.0M"),
    "pvt_v2_b2": (25_400_000, 50_000, "the PVTv2 paper: 25.4M"),
    "maxvit_tiny_tf_224": (30_900_000, 50_000, "timm's model card: 30.9M"),
    "efficientformerv2_s2": (12_700_000, 50_000, "timm's model card, with the distillation head: 12.7M"),
    "efficientformerv2_l": (26_300_000, 50_000, "timm's model card, with the distillation head: 26.3M"),
    "acmix_swin_tiny_patch4_window7_224": (28_649_908, 0, "the authors' release: 28,649,908"),
    "acmix_swin_small_patch4_window7_224": (51_000_000, 1_000_000, "the authors' README: 51M, rounded their way"),
}
OWN = {"atconv_swin_tiny", "atconv_pvt_v2_b1", "atconv_pvt_v2_b2"}  # this project's drop-ins: nobody publishes them
MACS_TOLERANCE = 0.03


def test_every_listed_backbone_is_recorded():
    assert set(PAPER_BACKBONES) == set(RECORDED) and set(FIXED_SIZE) <= set(RECORDED)
    assert set(PUBLISHED) | OWN == set(PAPER_BACKBONES)


@pytest.mark.parametrize("name", PUBLISHED)
def test_the_recorded_parameters_are_the_published_ones(name):
    published, tolerance, source = PUBLISHED[name]
    assert abs(RECORDED[name][0] - published) <= tolerance, source


@pytest.mark.slow
@pytest.mark.parametrize("name", PAPER_BACKBONES)
def test_a_measurement_agrees_with_the_record(name):
    from reid.models.backbones import measured_entry

    measured = measured_entry(name, RECORDED_PROBE, "no-weights-here")
    recorded = recorded_entry(name, RECORDED_PROBE, measured.weights)
    if name in PUBLISHED:
        published, tolerance, source = PUBLISHED[name]
        assert abs(measured.params - published) <= tolerance, source
    else:
        assert measured.params == pytest.approx(recorded.params, rel=1e-3)
    assert measured.macs_224 == pytest.approx(recorded.macs_224, rel=MACS_TOLERANCE)
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
    assert weights_file("resnet50", tmp_path) == f"missing: {tmp_path / 'resnet50-19c8e357.pth'}"  # AGW's start
    assert weights_file("convnext_tiny", tmp_path) is None  # timm's hub
    assert weights_file("atconv_swin_tiny", tmp_path).startswith("none")


def test_agws_torchvision_resnet50_file_loads_into_timms_resnet50(tmp_path):
    import torch
    import torchvision

    from reid.models.pretrained import weights_status

    torch.save(torchvision.models.resnet50().state_dict(), tmp_path / "resnet50-19c8e357.pth")  # its key layout
    assert weights_status("resnet50", tmp_path) == f"ok: {tmp_path / 'resnet50-19c8e357.pth'}"
