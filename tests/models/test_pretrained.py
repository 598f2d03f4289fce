import pytest
import timm
import torch
from reference_attnet import RefAttNet, randomize_

from reid.catalogue import ACMIX_RELEASE, ATTNET_RELEASE, RELEASED_WEIGHTS
from reid.models import CheckpointError, CheckpointMismatchError, load_pretrained
from reid.models.pretrained import weights_status


@pytest.fixture(scope="module")
def released():
    """A released-layout AttNet-T1 with random weights, as the authors' files hold it."""
    return randomize_(RefAttNet("attnet_t1"), seed=11).eval()


def write(path, payload):
    torch.save(payload, path)
    return str(path)


WRAPPINGS = {
    "raw": lambda sd: sd,
    "model": lambda sd: {"model": sd, "epoch": 299},
    "model_ema": lambda sd: {"model_ema": sd, "optimizer": {}, "epoch": 299},
    "ddp_prefixed": lambda sd: {"model": {"module." + k: v for k, v in sd.items()}},
}


@pytest.mark.parametrize("wrapping", list(WRAPPINGS))
def test_timm_file_mechanism_loads_released_weights(tmp_path, released, wrapping):
    path = write(tmp_path / "AttNet_T1.pth", WRAPPINGS[wrapping](released.state_dict()))
    model = timm.create_model("attnet_t1", pretrained=True, pretrained_cfg_overlay=dict(file=path)).eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(model(x), released(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("wrapping", list(WRAPPINGS))
def test_load_pretrained_helper(tmp_path, released, wrapping):
    path = write(tmp_path / "w.pth", WRAPPINGS[wrapping](released.state_dict()))
    model = timm.create_model("attnet_t1").eval()
    load_pretrained(model, path)
    x = torch.randn(2, 3, 96, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), released(x), rtol=1e-5, atol=1e-5)


def test_ema_weights_win_over_raw_ones(tmp_path, released):
    other = randomize_(RefAttNet("attnet_t1"), seed=12).state_dict()
    path = write(tmp_path / "w.pth", {"model": other, "model_ema": released.state_dict()})
    model = timm.create_model("attnet_t1").eval()
    load_pretrained(model, path)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), released(x), rtol=1e-5, atol=1e-5)


def test_backbone_without_classifier_gives_pre_logits(tmp_path, released):
    path = write(tmp_path / "w.pth", released.state_dict())
    for model in (
        timm.create_model("attnet_t1", num_classes=0, pretrained=True, pretrained_cfg_overlay=dict(file=path)),
        timm.create_model("attnet_t1", num_classes=0),
    ):
        if not isinstance(model.head, torch.nn.Identity):
            raise AssertionError("num_classes=0 must drop the classifier")
        load_pretrained(model, path)
        x = torch.randn(2, 3, 288, 144)
        with torch.no_grad():
            expected = released.norm(released.forward_features(x).mean((2, 3)))
            torch.testing.assert_close(model.eval()(x), expected, rtol=1e-5, atol=1e-5)


def test_new_classifier_size_keeps_backbone_weights(tmp_path, released):
    path = write(tmp_path / "w.pth", released.state_dict())
    model = timm.create_model("attnet_t1", num_classes=5).eval()
    load_pretrained(model, path)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model.forward_head(model.forward_features(x), pre_logits=True),
                                   released.norm(released.forward_features(x).mean((2, 3))), rtol=1e-5, atol=1e-5)


def test_single_channel_model_sums_rgb_filters(tmp_path, released):
    path = write(tmp_path / "w.pth", released.state_dict())
    gray = torch.randn(2, 1, 96, 48)
    expected = released(gray.expand(-1, 3, -1, -1))
    for model in (
        timm.create_model("attnet_t1", in_chans=1, pretrained=True, pretrained_cfg_overlay=dict(file=path)),
        timm.create_model("attnet_t1", in_chans=1),
    ):
        load_pretrained(model, path)
        with torch.no_grad():
            torch.testing.assert_close(model.eval()(gray), expected, rtol=1e-4, atol=1e-5)


def test_mismatch_lists_missing_and_unexpected_keys(tmp_path, released):
    state = dict(released.state_dict())
    del state["stages.2.3.token_mixer.kernel_gen.weight"]
    state["stages.9.0.extra.weight"] = torch.zeros(3)
    path = write(tmp_path / "bad.pth", state)
    with pytest.raises(CheckpointMismatchError) as error:
        load_pretrained(timm.create_model("attnet_t1"), path)
    message = str(error.value)
    assert "bad.pth" in message
    assert "1 missing: stages.2.3.token_mixer.kernel_gen.weight" in message
    assert "1 unexpected: stages.9.0.extra.weight" in message
    with pytest.raises(CheckpointMismatchError, match="stages.2.3.token_mixer.kernel_gen.weight"):
        timm.create_model("attnet_t1", pretrained=True, pretrained_cfg_overlay=dict(file=path))


def test_wrong_variant_reports_shapes(tmp_path):
    path = write(tmp_path / "t2.pth", RefAttNet("attnet_t2").state_dict())
    with pytest.raises(CheckpointMismatchError, match="wrong shape"):
        load_pretrained(timm.create_model("attnet_t1"), path)


def test_unreadable_and_missing_files(tmp_path):
    broken = tmp_path / "broken.pth"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="broken.pth: not a readable checkpoint"):
        load_pretrained(timm.create_model("attnet_xxs"), broken)
    with pytest.raises(CheckpointError, match="nope.pth: no such file"):
        load_pretrained(timm.create_model("attnet_xxs"), tmp_path / "nope.pth")


def test_any_timm_model_and_safetensors(tmp_path):
    from safetensors.torch import save_file

    source = timm.create_model("resnet18", num_classes=10).eval()
    path = tmp_path / "resnet18.safetensors"
    save_file(source.state_dict(), str(path))
    target = timm.create_model("resnet18", num_classes=0).eval()
    load_pretrained(target, path)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(target(x), source.forward_head(source.forward_features(x), pre_logits=True))


def test_weights_status_finds_and_checks_the_released_files(tmp_path, released):
    assert RELEASED_WEIGHTS["attnet_t1"].file == "AttNet_T1.pth"
    assert [w.page for w in RELEASED_WEIGHTS.values()].count(ATTNET_RELEASE) == 7  # every AttNet variant
    assert {n for n, w in RELEASED_WEIGHTS.items() if w.page == ACMIX_RELEASE} == set(timm.list_models("acmix_*"))
    assert weights_status("attnet_t1", tmp_path) == f"missing: {tmp_path / 'AttNet_T1.pth'}"
    write(tmp_path / "AttNet_T1.pth", {"model": released.state_dict()})
    assert weights_status("attnet_t1", tmp_path) == f"ok: {tmp_path / 'AttNet_T1.pth'}"
    write(tmp_path / "AttNet_XXS.pth", released.state_dict())  # T1 weights under the XXS name
    assert weights_status("attnet_xxs", tmp_path).startswith("does not load:")
    assert weights_status("convnext_tiny", tmp_path) is None  # timm's own weights are not looked for here


@pytest.mark.parametrize("name", ["resnet50", "convnext_tiny", "swin_tiny_patch4_window7_224", "pvt_v2_b1",
                                  "efficientformerv2_s2", "attnet_xxs", "acmix_swin_tiny_patch4_window7_224",
                                  "atconv_pvt_v2_b1"])
def test_one_loading_path_for_every_family_through_its_own_checkpoint_filter(tmp_path, name):
    """timm's convention, no per-family branch: the filter of the module that defines the model (timm's own for
    its models, ours for AttNet and ACmix) maps the file, and the model's own weights come back exactly."""
    import reid.models  # noqa: F401  (registers attnet_*, acmix_*, atconv_*)
    from reid.models.pretrained import filter_of

    torch.manual_seed(0)
    source = timm.create_model(name).eval()
    path = write(tmp_path / f"{name}.pth", source.state_dict())
    target = timm.create_model(name).eval()
    if name.startswith(("attnet", "acmix")):
        assert filter_of(target).__module__ == type(target).__module__  # the released layout's own filter
    load_pretrained(target, path)
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key
