import logging

import pytest
import timm
import torch
from reference_attnet import RefAttNet, randomize_
from timm.layers import DropPath
from timm.optim import create_optimizer_v2

import reid.models  # noqa: F401  (registers attnet_* in timm)
from reid.models import checkpoint_filter_fn, released_state_dict
from reid.models.attnet import remap_released_keys

# the released networks' figures: parameters with a 1000-class head, and their fvcore MACs at 224x224
SPEC = {
    "attnet_xxs": (2.854e6, 0.536e9),
    "attnet_xs": (5.555e6, 1.012e9),
    "attnet_s": (7.681e6, 1.336e9),
    "attnet_t1": (13.715e6, 2.434e9),
    "attnet_t2": (27.011e6, 5.110e9),
    "attnet_t3": (49.176e6, 9.415e9),
    "attnet_t4": (87.320e6, 16.773e9),
}
# the exact parameter counts, counted by hand from the spec's description of each part (see
# test_the_exact_counts_follow_from_the_spec); a model without, e.g., its LayerScales is 8,448 parameters short
EXACT_PARAMETERS = {
    "attnet_xxs": 2_853_556, "attnet_xs": 5_554_902, "attnet_s": 7_681_316, "attnet_t1": 13_714_900,
    "attnet_t2": 27_010_782, "attnet_t3": 49_175_682, "attnet_t4": 87_320_214,
}
# the spec's variant table: depths, dims, glu_dconv, glu_norm, layer_scale (exp_rates 8, 8, 4, 4)
SPEC_TABLE = {
    "attnet_xxs": ((2, 2, 4, 2), (32, 64, 128, 240), True, False, False),
    "attnet_xs": ((2, 2, 7, 2), (40, 80, 160, 320), True, False, True),
    "attnet_s": ((2, 3, 10, 3), (40, 80, 160, 320), True, False, False),
    "attnet_t1": ((2, 3, 12, 3), (48, 96, 224, 384), True, True, True),
    "attnet_t2": ((3, 3, 16, 3), (64, 128, 288, 512), True, True, True),
    "attnet_t3": ((4, 4, 26, 4), (72, 144, 320, 576), True, True, True),
    "attnet_t4": ((5, 5, 28, 5), (96, 192, 384, 768), True, True, True),
}
MODELS = timm.list_models("attnet_*")
SMALL = ["attnet_xxs", "attnet_xs", "attnet_t1"]  # covers glu_norm and layer_scale on and off


def test_every_variant_is_registered():
    assert sorted(MODELS) == sorted(SPEC)


@pytest.mark.parametrize("name", MODELS)
def test_parameter_count_is_exact(name):
    model = timm.create_model(name)
    assert sum(p.numel() for p in model.parameters()) == EXACT_PARAMETERS[name]


def spec_parameters(depths, dims, glu_dconv, glu_norm, layer_scale, exp_rates=(8, 8, 4, 4), classes=1000) -> int:
    """Parameters of a variant, part by part as the spec describes them (stem, downsamples, blocks, head)."""
    c0 = dims[0]
    total = 3 * (c0 // 2) * 9 + 2 * (c0 // 2) + (c0 // 2) * c0 * 9 + 2 * c0  # stem: two bias-free convs + BNs
    total += sum(dims[i - 1] * dims[i] * 9 + 2 * dims[i] for i in range(1, 4))  # downsamples: conv + BN
    for depth, c, rate in zip(depths, dims, exp_rates, strict=True):
        hidden = int(2 * int(c * rate) / 3)
        atconv = 3 * (c * c + c) + (9 * 9 + 9) + c  # kernel_proj, x_proj, proj; kernel_gen; difference_control
        glu = c * 2 * hidden + 2 * hidden + (hidden * 9 + hidden if glu_dconv else 0) + (hidden if glu_norm else 0) \
            + hidden * c + c  # fc1, dwconv, RMS norm weight, fc2
        block = 2 * 2 * c + (2 * c if layer_scale else 0) + atconv + glu  # two LayerNorm2d, two LayerScales
        total += depth * block
    return total + 2 * dims[-1] + dims[-1] * classes + classes  # head LayerNorm and Linear


@pytest.mark.parametrize("name", MODELS)
def test_the_exact_counts_follow_from_the_spec(name):
    assert spec_parameters(*SPEC_TABLE[name]) == EXACT_PARAMETERS[name]
    assert round(EXACT_PARAMETERS[name] / 1e6, 3) == round(SPEC[name][0] / 1e6, 3)  # the spec's "13.715M"


@pytest.mark.parametrize("name", MODELS)
def test_reference_network_macs_match_spec(name):
    fvcore = pytest.importorskip("fvcore.nn")
    logging.getLogger("fvcore").setLevel(logging.ERROR)
    reference = RefAttNet(name).eval()
    counter = fvcore.FlopCountAnalysis(reference, torch.randn(1, 3, 224, 224))
    counter.unsupported_ops_warnings(False)
    counter.uncalled_modules_warnings(False)
    # the release applies its per-sample kernels with a grouped conv (C*H*W*K*K MACs); the reference unfolds
    per_sample_conv = sum(
        block.token_mixer.x_proj.out_channels * (56 // 2 ** stage) ** 2 * 9
        for stage, blocks in enumerate(reference.stages) for block in blocks
    )
    assert counter.total() + per_sample_conv == pytest.approx(SPEC[name][1], rel=1e-3)


@pytest.mark.parametrize("name", MODELS)
def test_forward_shapes_and_timm_contract(name):
    model = timm.create_model(name, num_classes=7).eval()
    cfg = model.pretrained_cfg
    assert cfg["input_size"] == (3, 224, 224) and cfg["crop_pct"] == 0.875 and cfg["interpolation"] == "bicubic"
    assert model.get_submodule(cfg["first_conv"]).in_channels == 3
    assert model.get_submodule(cfg["classifier"]) is model.get_classifier()
    x = torch.randn(2, 3, 64, 32)
    with torch.no_grad():
        features = model.forward_features(x)
        assert features.shape == (2, model.num_features, 2, 1)
        assert model.forward_head(features, pre_logits=True).shape == (2, model.num_features)
        assert model(x).shape == (2, 7)
    model.reset_classifier(0)
    with torch.no_grad():
        assert model(x).shape == (2, model.num_features)


@pytest.mark.parametrize("name", SMALL)
@pytest.mark.parametrize("pool", ["seq", "grid"])
def test_matches_released_network(name, pool):
    reference = randomize_(RefAttNet(name, pool=pool), seed=5).eval()
    model = timm.create_model(name, pool=pool).eval()
    model.load_state_dict(checkpoint_filter_fn(reference.state_dict(), model))
    for shape in [(2, 3, 224, 224), (3, 3, 288, 144), (1, 3, 40, 72)]:
        x = torch.randn(shape, generator=torch.Generator().manual_seed(shape[2]))
        with torch.no_grad():
            torch.testing.assert_close(model(x), reference(x), rtol=1e-5, atol=1e-5)


def test_training_gradients_match_released_network():
    reference = randomize_(RefAttNet("attnet_t1"), seed=6).train()
    model = timm.create_model("attnet_t1", drop_path_rate=0.0).train()
    model.load_state_dict(checkpoint_filter_fn(reference.state_dict(), model))
    x = torch.randn(4, 3, 64, 48)
    model(x).square().mean().backward()
    reference(x).square().mean().backward()
    ref_grads = {k: p.grad for k, p in reference.named_parameters()}
    ours = {k: p.grad for k, p in model.named_parameters()}
    fused = remap_released_keys(ref_grads)  # gradients map like the weights they belong to
    for key, grad in ours.items():
        torch.testing.assert_close(grad, fused[key], rtol=1e-4, atol=1e-6, msg=key)


@pytest.mark.parametrize("name", SMALL)
def test_released_state_dict_round_trip(name):
    reference = RefAttNet(name)
    model = timm.create_model(name)
    released = released_state_dict(model)
    assert sorted(released) == sorted(reference.state_dict())
    assert all(released[k].shape == v.shape for k, v in reference.state_dict().items())
    again = timm.create_model(name)
    again.load_state_dict(checkpoint_filter_fn(released, again))
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in model.state_dict().items())


def test_features_only():
    model = timm.create_model("attnet_xxs", features_only=True).eval()
    assert model.feature_info.channels() == [32, 64, 128, 240]
    assert model.feature_info.reduction() == [4, 8, 16, 32]
    with torch.no_grad():
        maps = model(torch.randn(2, 3, 128, 64))
    assert [tuple(m.shape) for m in maps] == [(2, 32, 32, 16), (2, 64, 16, 8), (2, 128, 8, 4), (2, 240, 4, 2)]
    partial = timm.create_model("attnet_xxs", features_only=True, out_indices=(1, 2)).eval()
    with torch.no_grad():
        assert [m.shape[1] for m in partial(torch.randn(1, 3, 64, 64))] == [64, 128]


def test_features_equal_forward_intermediates_of_full_model():
    full = timm.create_model("attnet_xxs").eval()
    features = timm.create_model("attnet_xxs", features_only=True).eval()
    features.model.load_state_dict(full.state_dict(), strict=False)
    x = torch.randn(1, 3, 96, 64)
    with torch.no_grad():
        final, intermediates = full.forward_intermediates(x)
        torch.testing.assert_close(final, full.forward_features(x))
        for a, b in zip(features(x), intermediates, strict=True):
            torch.testing.assert_close(a, b)


def test_single_channel_input():
    model = timm.create_model("attnet_xxs", in_chans=1, num_classes=0).eval()
    assert model.get_submodule(model.pretrained_cfg["first_conv"]).in_channels == 1
    with torch.no_grad():
        assert model(torch.randn(2, 1, 64, 32)).shape == (2, 240)


def test_drop_path_rates_rise_linearly_to_the_variant_default():
    def rates(model):
        return [block.drop_path.drop_prob if isinstance(block.drop_path, DropPath) else 0.0
                for stage in model.stages for block in stage]

    expected = torch.linspace(0, 0.1, 20).tolist()  # T1 has 2+3+12+3 blocks, default drop_path_rate 0.1
    assert rates(timm.create_model("attnet_t1")) == pytest.approx(expected)
    assert rates(timm.create_model("attnet_t1", drop_path_rate=0.3))[-1] == pytest.approx(0.3)
    none = timm.create_model("attnet_t1", drop_path_rate=0.0)
    assert all(isinstance(block.drop_path, torch.nn.Identity) for stage in none.stages for block in stage)


def test_no_weight_decay_on_difference_control_norms_and_biases():
    model = timm.create_model("attnet_xxs")
    names = model.no_weight_decay()
    assert len(names) == 10 and all(n.endswith("difference_control") for n in names)
    optimizer = create_optimizer_v2(model, "adamw", lr=1e-3, weight_decay=0.05)
    decayed = {id(p) for g in optimizer.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    by_name = dict(model.named_parameters())
    assert id(by_name["stages.0.0.token_mixer.difference_control"]) not in decayed
    assert id(by_name["stages.0.0.norm_1.weight"]) not in decayed
    assert id(by_name["stages.0.0.token_mixer.x_proj.bias"]) not in decayed
    assert id(by_name["stages.0.0.token_mixer.x_proj.weight"]) in decayed


def test_grad_checkpointing_gives_identical_gradients():
    torch.manual_seed(0)
    model = timm.create_model("attnet_xxs", drop_path_rate=0.0).train()
    x = torch.randn(2, 3, 64, 64)
    model(x).sum().backward()
    plain = {k: p.grad.clone() for k, p in model.named_parameters()}
    model.zero_grad()
    model.set_grad_checkpointing(True)
    model(x).sum().backward()
    for key, parameter in model.named_parameters():
        torch.testing.assert_close(parameter.grad, plain[key], msg=key)


def test_channels_last_and_batch_independence():
    model = timm.create_model("attnet_xxs").eval()
    x = torch.randn(3, 3, 96, 48)
    with torch.no_grad():
        together = model(x.contiguous(memory_format=torch.channels_last))
        alone = model(x[1:2])
    torch.testing.assert_close(together[1:2], alone, rtol=1e-5, atol=1e-5)


def test_inference_fast_paths_match_autograd_path(monkeypatch):
    from reid.models import attnet

    model = timm.create_model("attnet_t1").eval()
    x = torch.randn(5, 3, 96, 64)
    expected = model(x).detach()  # grad enabled: no tiling, no in-place ops
    monkeypatch.setattr(attnet, "_CPU_INFERENCE_TILE", 1)  # one sample per tile in every stage
    with torch.no_grad():
        tiled = model(x)
    monkeypatch.setattr(attnet, "_CPU_INFERENCE_TILE", 10 ** 12)  # whole batch, in-place ops only
    with torch.inference_mode():
        whole = model(x)
    torch.testing.assert_close(tiled, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(whole, expected, rtol=1e-5, atol=1e-5)
