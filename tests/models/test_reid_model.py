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
        assert out.features.shape == out.bn_features.shape == (4, 240) and out.logits.shape == (4, 5)
    model.eval()
    bare = ReIDModel("attnet_xxs", num_classes=0, input_size=(64, 32)).eval()
    out = bare(images)
    assert out.logits is None and torch.equal(out.features, out.bn_features)
    assert torch.allclose(bare.embed(images).norm(dim=1), torch.ones(4))


def test_bnneck_has_no_shift_and_classifier_has_no_bias(model):
    assert not model.bottleneck.bias.requires_grad and model.classifier.bias is None


def test_tracklets_average_frame_features(model):
    model.eval()
    frames = torch.randn(2, 3, 3, 64, 32)
    with torch.no_grad():
        per_frame = model.pooled_features(frames.flatten(0, 1)).view(2, 3, -1).mean(1)
        torch.testing.assert_close(model(frames).features, per_frame, rtol=1e-5, atol=1e-5)


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
        routed = two_stream(images, torch.tensor([False, True, False, True])).features
        torch.testing.assert_close(routed[0::2], two_stream(images[0::2], torch.tensor([False, False])).features,
                                   rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(routed[1::2], two_stream.pooled_features(images[1::2], torch.tensor([True, True])))
        assert not torch.allclose(routed[1], two_stream(images[1:2], torch.tensor([False])).features[0])


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
        assert model(torch.randn(2, 3, *model.input_size)).features.shape == (2, model.num_features)


def test_no_weight_decay_names_reach_the_backbone(model):
    names = model.no_weight_decay()
    assert "backbone.stages.0.0.token_mixer.difference_control" in names
