import pytest
import timm
import torch
import torch.nn.functional as F
from reference_acmix import RefACmixSwin, randomize_
from timm.models.swin_transformer import WindowAttention, window_partition, window_reverse

from reid.models import ACmix, CheckpointMismatchError, load_pretrained
from reid.models.acmix import ACmixSwinBlock, checkpoint_filter_fn, remap_released_keys
from reid.models.backbones import count_parameters, create_backbone
from reid.models.reid_model import ReIDModel

MODELS = timm.list_models("acmix_*")
TINY = "acmix_swin_tiny_patch4_window7_224"


@pytest.fixture(scope="module")
def released():
    """A released-layout ACmix Swin-T with random weights, as the authors' code saves it."""
    return randomize_(RefACmixSwin(TINY), seed=4).eval()


def test_both_sizes_are_registered():
    assert sorted(MODELS) == ["acmix_swin_small_patch4_window7_224", TINY]


def test_parameter_counts_equal_the_released_networks():
    assert count_parameters(timm.create_model(TINY)) == 28_649_908  # the release's Swin-T, 1000-class head
    small = "acmix_swin_small_patch4_window7_224"
    assert count_parameters(timm.create_model(small)) == count_parameters(RefACmixSwin(small))


@pytest.mark.parametrize("name", MODELS)
def test_released_layout_loads_and_outputs_equal_the_released_network(name):
    reference = randomize_(RefACmixSwin(name), seed=5).eval()
    model = timm.create_model(name).eval()
    model.load_state_dict(checkpoint_filter_fn({"model": reference.state_dict()}, model))
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), rtol=1e-4, atol=1e-4)


def test_training_gradients_equal_the_released_network():
    reference = randomize_(RefACmixSwin(TINY), seed=6).train()
    model = timm.create_model(TINY, drop_path_rate=0.0).train()
    model.load_state_dict(checkpoint_filter_fn(reference.state_dict(), model))
    x = torch.randn(2, 3, 224, 224)
    model(x).square().mean().backward()
    reference(x).square().mean().backward()
    released_grads = remap_released_keys({k: p.grad for k, p in reference.named_parameters()}, model)
    for key, parameter in model.named_parameters():  # gradients map like the weights they belong to
        torch.testing.assert_close(parameter.grad, released_grads[key], rtol=1e-3, atol=1e-6, msg=key)


def test_released_file_loads_through_timm_pretrained_cfg(tmp_path, released):
    path = tmp_path / "ACmix_Swin_T.pth"
    torch.save({"model": released.state_dict(), "epoch": 299}, path)
    model = timm.create_model(TINY, pretrained=True, pretrained_cfg_overlay=dict(file=str(path))).eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(model(x), released(x), rtol=1e-4, atol=1e-4)
    headless = timm.create_model(TINY, pretrained=True, num_classes=0, pretrained_cfg_overlay=dict(file=str(path)))
    assert torch.equal(headless.state_dict()["norm.weight"], released.state_dict()["norm.weight"])


def test_released_file_trains_as_a_reid_backbone_at_288x144(tmp_path, released):
    path = tmp_path / "ACmix_Swin_T.pth"
    torch.save({"model": released.state_dict()}, path)
    model = ReIDModel(TINY, 5, (288, 144), pretrained=path)
    loaded = model.backbone.state_dict()
    assert torch.equal(loaded["layers.2.blocks.0.attn.dep_conv.weight"],
                       released.state_dict()["layers.2.blocks.0.attn.dep_conv.weight"])
    # stage 4 runs at 9x5: its windows are 7x5, so the 13x13 position tables were resized to 13x9
    assert model.backbone.layers[3].blocks[0].attn.window_size == (7, 5)
    assert loaded["layers.3.blocks.0.attn.relative_position_bias_table"].shape == (13 * 9, 24)
    output = model.train()(torch.randn(4, 3, 288, 144))
    output.logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    infrared = timm.create_model(TINY, in_chans=1, num_classes=0)
    load_pretrained(infrared, path)  # the patch embedding is adapted to one channel, as timm does


def test_other_checkpoints_are_refused_with_the_keys_named(released):
    small = timm.create_model("acmix_swin_small_patch4_window7_224")
    with pytest.raises(CheckpointMismatchError, match=r"missing: layers\.2\.blocks\.6"):
        checkpoint_filter_fn({"model": released.state_dict()}, small)
    plain_swin = timm.create_model("swin_tiny_patch4_window7_224").state_dict()
    with pytest.raises(CheckpointMismatchError, match=r"missing: .*attn\.(fc|dep_conv|rate)"):
        checkpoint_filter_fn(plain_swin, timm.create_model(TINY))


@pytest.mark.parametrize("size", [(224, 224), (288, 144)])
def test_runs_at_the_reid_size_and_224(size):
    created = create_backbone(TINY, size)
    assert created.input_size == size and created.note is None
    blocks = [m for m in created.model.modules() if isinstance(m, ACmixSwinBlock)]
    assert len(blocks) == 12 and all(isinstance(b.attn, ACmix) for b in blocks)


def test_timm_contract():
    model = timm.create_model(TINY, features_only=True, out_indices=(1, 3))
    assert [f.shape for f in model(torch.randn(1, 3, 224, 224))] == [(1, 28, 28, 192), (1, 7, 7, 768)]
    assert timm.create_model(TINY, num_classes=0, in_chans=1)(torch.randn(2, 1, 224, 224)).shape == (2, 768)
    rates = [b.drop_path1.drop_prob for b in timm.create_model(TINY).modules() if isinstance(b, ACmixSwinBlock)
             if hasattr(b.drop_path1, "drop_prob")]
    assert max(rates) == pytest.approx(0.2)  # the release's rate for Swin-T


def operator(dim=24, heads=3, window=7, rate_attention=1.0, rate_convolution=1.0, seed=0):
    torch.manual_seed(seed)
    mixer = ACmix(dim, heads, window).eval()
    with torch.no_grad():
        mixer.rate1.fill_(rate_attention)
        mixer.rate2.fill_(rate_convolution)
        mixer.relative_position_bias_table.normal_()
    return mixer


def test_attention_path_is_swin_window_attention():
    mixer = operator(rate_convolution=0.0)
    attention = WindowAttention(24, num_heads=3, window_size=7).eval()
    attention.load_state_dict({k: v for k, v in mixer.state_dict().items() if k in attention.state_dict()})
    x = torch.randn(2, 24, 14, 21)
    with torch.no_grad():
        windows = window_partition(x.permute(0, 2, 3, 1), (7, 7)).flatten(1, 2)
        expected = window_reverse(attention(windows).view(-1, 7, 7, 24), (7, 7), 14, 21).permute(0, 3, 1, 2)
        torch.testing.assert_close(mixer(x), expected, rtol=1e-5, atol=1e-5)


def test_convolution_path_starts_as_the_sum_of_shifted_maps():
    mixer = operator(rate_attention=0.0)
    heads, head_dim = 3, 8
    x = torch.randn(2, 24, 9, 11)
    with torch.no_grad():
        qkv = mixer.qkv(x.permute(0, 2, 3, 1))  # (B, H, W, 3 * heads * head_dim)
        groups = qkv.unflatten(-1, (3 * heads, head_dim))  # projection j of head channel d at [..., j, d]
        maps = torch.einsum("bhwjd,kj->bdkhw", groups, mixer.fc.weight[:, :, 0, 0])
        maps = maps + mixer.fc.bias[None, None, :, None, None]  # (B, head_dim, 9, H, W)
        padded = F.pad(maps, (1, 1, 1, 1))
        summed = sum(padded[:, :, 3 * dy + dx, dy:dy + 9, dx:dx + 11] for dy in range(3) for dx in range(3))
        # the release's channel order: head channel d, then head h (every head of d gets the same sum at init)
        expected = summed.unsqueeze(2).expand(-1, -1, heads, -1, -1).reshape(2, 24, 9, 11)
        torch.testing.assert_close(mixer(x), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("size", [(7, 7), (9, 11), (3, 5)])
def test_operator_keeps_any_map_size_and_trains(size):
    mixer = operator().train()
    x = torch.randn(2, 24, *size, requires_grad=True)
    out = mixer(x)
    assert out.shape == x.shape
    out.square().mean().backward()
    assert x.grad is not None and all(p.grad is not None for p in mixer.parameters())
