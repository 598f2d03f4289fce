import copy

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


def agw_joint_pass(model, images, infrared):
    """AGW's embed_net forward written out (mangye16/Cross-Modal-Re-ID-baseline, model.py): the visible module's
    conv1, bn1, relu, max pool on the visible images, the thermal module's on the infrared ones, concatenated, then
    layer1-4 once over all of them, GeM with p = 3."""
    def stem(backbone, x):
        return backbone.maxpool(backbone.act1(backbone.bn1(backbone.conv1(x))))

    order = torch.cat([torch.nonzero(~infrared).flatten(), torch.nonzero(infrared).flatten()])
    x = torch.cat([stem(model.backbone, images[~infrared]), stem(model.infrared_backbone, images[infrared])])
    for layer in (model.backbone.layer1, model.backbone.layer2, model.backbone.layer3, model.backbone.layer4):
        x = layer(x)
    pooled = (x.flatten(2).pow(3).mean(-1) + 1e-12).pow(1 / 3)  # AGW's GeM (its clamp-free form)
    restored = torch.empty_like(pooled)
    restored[order] = pooled
    return restored


def test_two_stems_feed_one_pass_of_the_shared_layers_as_agw_runs_them():
    """One training step's BatchNorm statistics and pooled features equal AGW's joint pass: the shared layers
    normalise over both modalities together and count one batch, whatever order the samples come in."""
    torch.manual_seed(0)
    model = ReIDModel("resnet18", 4, (64, 32), pooling="gem", modality_stems=True, gem_trainable=False).train()
    reference = copy.deepcopy(model)
    images = torch.randn(8, 3, 64, 32)
    infrared = torch.tensor([False, True, True, False, True, False, False, True])  # the modalities interleaved
    pooled = model(images, infrared).pooled
    expected = agw_joint_pass(reference, images, infrared)
    torch.testing.assert_close(pooled, expected, rtol=1e-4, atol=1e-5)
    shared = model.backbone.layer1[0].bn1
    assert int(shared.num_batches_tracked) == 1  # one pass of the shared layers, not one per modality
    torch.testing.assert_close(shared.running_mean, reference.backbone.layer1[0].bn1.running_mean)
    torch.testing.assert_close(shared.running_var, reference.backbone.layer1[0].bn1.running_var)
    assert int(model.backbone.bn1.num_batches_tracked) == int(model.infrared_backbone.bn1.num_batches_tracked) == 1
    torch.testing.assert_close(model.backbone.bn1.running_mean, reference.backbone.bn1.running_mean)


def non_local_parameters(channels: int, inner: int) -> int:
    """AGW's Non_local block: g, theta and phi (1x1 convs channels -> inner, with bias), W (a 1x1 conv inner ->
    channels with bias, and a BatchNorm of channels)."""
    return 3 * (channels * inner + inner) + inner * channels + channels + 2 * channels


@pytest.mark.parametrize("channels, inner, total", [
    ("one", 1, 25_010_575),    # AGW's model.py (mangye16 and ZYK100/LLCM, line 21: reduc_ratio // reduc_ratio)
    ("half", None, None),      # the non-local paper: in_channels // 2
])
def test_agws_non_local_blocks_sit_where_agw_puts_them_with_its_parameters(channels, inner, total):
    """Two blocks after layer2's last two blocks (2, 3) and three after layer3's last three (3, 4, 5), AGW's
    NL_2_idx and NL_3_idx; the count is AGW's for its forward pass, 24,981,888 without them."""
    classes = 713
    model = ReIDModel("resnet50", classes, (288, 144), pooling="gem", modality_stems=True, last_stride=1,
                      gem_trainable=False, bnneck_init_std=0.01, non_local=[0, 2, 3, 0], non_local_channels=channels)
    assert list(model.non_local) == ["layer2_2", "layer2_3", "layer3_3", "layer3_4", "layer3_5"]
    extra = 2 * non_local_parameters(512, inner or 256) + 3 * non_local_parameters(1024, inner or 512)
    assert sum(p.numel() for p in model.parameters()) == 24_981_888 + extra
    if total is not None:
        assert 24_981_888 + extra == total
    block = model.non_local["layer3_4"]
    x = torch.randn(2, 1024, 9, 5)
    torch.testing.assert_close(block.eval()(x), x)  # W's BatchNorm starts at zero: a new block is the identity


def test_non_local_blocks_are_refused_where_there_are_no_resnet_stages():
    from reid.models.backbones import BackboneError

    with pytest.raises(BackboneError, match="non_local: attnet_xxs has no ResNet stages"):
        ReIDModel("attnet_xxs", 5, (64, 32), non_local=[0, 2, 3, 0])
