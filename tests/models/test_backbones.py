import pytest
import timm
import torch
from torch import nn

import reid.models  # noqa: F401  (registers attnet_* in timm)
from reid.models.backbones import BackboneError, count_macs, count_parameters, create_backbone, describe_backbone


def test_attnet_runs_at_any_requested_size():
    backbone = create_backbone("attnet_xxs", (288, 144))
    assert backbone.input_size == (288, 144) and backbone.note is None
    with torch.no_grad():
        assert backbone.model.eval()(torch.randn(1, 3, 288, 144)).shape == (1, 240)


def test_img_size_models_are_built_for_the_requested_size():
    backbone = create_backbone("swin_tiny_patch4_window7_224", (288, 144))
    assert backbone.input_size == (288, 144) and backbone.note is None
    assert tuple(backbone.model.patch_embed.img_size) == (288, 144)


def test_fixed_size_models_fall_back_to_native_size_with_a_note():
    backbone = create_backbone("maxvit_nano_rw_256", (288, 144))
    assert backbone.input_size == (256, 256)
    assert "needs a fixed input size" in backbone.note and "256x256" in backbone.note


def test_unknown_backbone_is_a_user_error_with_suggestions():
    with pytest.raises(BackboneError, match="unknown backbone 'resnet5O'; similar: .*resnet"):
        create_backbone("resnet5O")


def test_pretrained_file_is_loaded(tmp_path):
    source = timm.create_model("resnet18", num_classes=0)
    torch.save({"model": source.state_dict()}, tmp_path / "r18.pth")
    backbone = create_backbone("resnet18", (64, 64), pretrained=tmp_path / "r18.pth")
    assert all(torch.equal(v, backbone.model.state_dict()[k]) for k, v in source.state_dict().items())


def test_count_macs_counts_convolutions_and_matmuls_exactly():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Flatten(), nn.Linear(8 * 10 * 6, 5))
    assert count_macs(model, (10, 6)) == 3 * 8 * 9 * 60 + 8 * 60 * 5
    assert count_parameters(model) == 3 * 8 * 9 + 8 + 480 * 5 + 5


def test_count_macs_counts_fused_attention():
    class Attend(nn.Module):  # (1, heads=2, tokens=16, dim=8) queries attending to themselves
        def forward(self, x):
            return torch.nn.functional.scaled_dot_product_attention(x, x, x)

    assert count_macs(Attend(), (16, 8), in_chans=2) == 2 * (16 * 16 * 8 + 16 * 16 * 8)  # q k^T, then weights v


def test_describe_reports_imagenet_head_params():
    info = describe_backbone("attnet_xxs")
    assert info.params == pytest.approx(2.854e6, rel=1e-3)
    assert info.input_size == (288, 144) and info.note is None
    assert 0.45e9 < info.macs_224 < 0.536e9  # below the released network's count: kernel_proj after pooling
