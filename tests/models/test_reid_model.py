import pytest
import torch

import reid.models  # noqa: F401  (registers attnet_* in timm)
from reid.models.reid_model import GeM, ReIDModel, ReIDOutput


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return ReIDModel("attnet_xxs", num_classes=5, input_size=(64, 32))


def test_one_output_type_in_training_and_evaluation(model):
    images = torch.randn(4, 3, 64, 32)
    for train in (True, False):
        out = model.train(train)(images)
        assert isinstance(out, ReIDOutput)
        assert out.pooled.shape == out.embeddings.shape == (4, 240) and out.logits.shape == (4, 5)
    model.eval()
    bare = ReIDModel("attnet_xxs", num_classes=0, input_size=(64, 32)).eval()
    out = bare(images)
    assert out.logits is None and torch.equal(out.pooled, out.embeddings)
    assert torch.allclose(bare.embed(images).norm(dim=1), torch.ones(4))


def test_bnneck_has_no_shift_and_classifier_has_no_bias(model):
    assert not model.bottleneck.bias.requires_grad and model.classifier.bias is None


def test_tracklets_average_frame_features(model):
    model.eval()
    frames = torch.randn(2, 3, 3, 64, 32)
    with torch.no_grad():
        per_frame = model.pool(frames.flatten(0, 1)).view(2, 3, -1).mean(1)
        torch.testing.assert_close(model(frames).pooled, per_frame, rtol=1e-5, atol=1e-5)


def test_modality_stems_share_everything_after_the_stem():
    two_stream = ReIDModel("attnet_xxs", num_classes=5, input_size=(64, 32), modality_stems=True).eval()
    visible = dict(two_stream.backbone.named_parameters())
    infrared = dict(two_stream.infrared_backbone.named_parameters())
    for name, parameter in visible.items():
        shared = infrared[name] is parameter
        assert shared == (not name.startswith("downsample_layers.0")), name
    stem_size = sum(p.numel() for n, p in visible.items() if n.startswith("downsample_layers.0"))
    single = ReIDModel("attnet_xxs", num_classes=5, input_size=(64, 32))
    assert sum(p.numel() for p in two_stream.parameters()) == sum(p.numel() for p in single.parameters()) + stem_size
    with torch.no_grad():
        for p in two_stream.infrared_backbone.downsample_layers[0].parameters():
            p.add_(0.5)  # make the two stems differ
        images = torch.randn(4, 3, 64, 32)
        routed = two_stream(images, torch.tensor([False, True, False, True])).pooled
        torch.testing.assert_close(routed[0::2], two_stream(images[0::2], torch.tensor([False, False])).pooled,
                                   rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(routed[1::2], two_stream.pool(images[1::2], torch.tensor([True, True])))
        assert not torch.allclose(routed[1], two_stream(images[1:2], torch.tensor([False])).pooled[0])


def test_modality_stems_for_resnet_follow_timm_stem_names():
    two_stream = ReIDModel("resnet18", num_classes=3, input_size=(64, 32), modality_stems=True)
    assert two_stream.infrared_backbone.conv1 is not two_stream.backbone.conv1
    assert two_stream.infrared_backbone.layer1 is two_stream.backbone.layer1


def test_gem_pooling():
    gem = GeM(p=3.0)
    x = torch.rand(2, 4, 3, 5)
    torch.testing.assert_close(gem(x), x.clamp(min=1e-6).pow(3).mean((2, 3)).pow(1 / 3))
    for backbone in ("attnet_xxs", "swin_tiny_patch4_window7_224"):
        model = ReIDModel(backbone, 3, (64, 64) if "swin" in backbone else (64, 32), pooling="gem").eval()
        assert model(torch.randn(2, 3, *model.input_size)).pooled.shape == (2, model.num_features)


def test_no_weight_decay_names_reach_the_backbone(model):
    names = model.no_weight_decay()
    assert "backbone.stages.0.0.token_mixer.difference_control" in names


def resnet50_parameters() -> int:
    """ResNet-50's parameters part by part (He et al.; torchvision's and AGW's resnet.py), without a classifier:
    the stem (7x7 conv 3 -> 64, BN) and the four stages of bottlenecks (1x1, 3x3, 1x1 convs with BNs; a 1x1 conv
    and BN shortcut in each stage's first block)."""
    total = 7 * 7 * 3 * 64 + 2 * 64
    inplanes = 64
    for planes, blocks in ((64, 3), (128, 4), (256, 6), (512, 3)):
        for block in range(blocks):
            total += inplanes * planes + 2 * planes + 9 * planes * planes + 2 * planes + planes * 4 * planes \
                + 2 * 4 * planes
            if block == 0:
                total += inplanes * 4 * planes + 2 * 4 * planes
            inplanes = 4 * planes
    return total


def test_agws_two_stream_resnet50_has_agws_parameters_and_map():
    """AGW's embed_net without non-local blocks (mangye16/Cross-Modal-Re-ID-baseline, model.py): a visible and a
    thermal stem (conv1, bn1), the shared layer1-4 of a ResNet-50 with last stride 1, GeM with p fixed at 3 (no
    parameter), a BNNeck (BN weight and frozen bias) and a bias-free classifier. (AGW's module also registers the
    unused rest of the three ResNet-50 trunks it slices these from; the count is of what its forward pass uses.)"""
    classes = 713  # LLCM's training identities
    assert resnet50_parameters() + 2048 * 1000 + 1000 == 25_557_032  # ResNet-50's well-known count, with its fc
    stem = 7 * 7 * 3 * 64 + 2 * 64
    agw = 2 * stem + (resnet50_parameters() - stem) + 2 * 2048 + 2048 * classes
    model = ReIDModel("resnet50", classes, (288, 144), pooling="gem", modality_stems=True, last_stride=1,
                      gem_trainable=False, bnneck_init_std=0.01)
    assert sum(p.numel() for p in model.parameters()) == agw == 24_981_888
    assert "gem.p" not in dict(model.named_parameters()) and float(model.gem.p) == 3.0
    with torch.no_grad():
        assert model.backbone.forward_features(torch.zeros(1, 3, 288, 144)).shape == (1, 2048, 18, 9)
    weight = model.bottleneck.weight.detach()
    assert 0.95 < weight.min() < weight.max() < 1.05 and 0.005 < weight.std() < 0.015  # N(1, 0.01), as AGW's
    assert not model.bottleneck.bias.requires_grad and model.classifier.bias is None


def test_a_last_stride_is_refused_for_backbones_without_one():
    from reid.models.backbones import BackboneError

    with pytest.raises(BackboneError, match="last_stride: attnet_xxs has no last stride to change"):
        ReIDModel("attnet_xxs", 5, (64, 32), last_stride=1)
