import pytest
import torch
import torch.nn.functional as F
from reference_attnet import RefATConv, randomize_

from reid.models import ATConv, per_sample_depthwise_conv, pooling_matrix

SHAPES = [(1, 8, 1, 1), (2, 16, 5, 7), (3, 8, 7, 3), (4, 32, 14, 14), (2, 8, 2, 9), (1, 24, 9, 5), (5, 4, 3, 3)]


def paired(dim: int, pool: str, seed: int = 0) -> tuple[ATConv, RefATConv]:
    """Our ATConv and the reference with the same (random, non-trivial) weights."""
    reference = randomize_(RefATConv(dim, 3, pool), seed)
    ours = ATConv(dim, 3, pool)
    state = {k: v.flatten(1) if v.ndim == 4 else v for k, v in reference.state_dict().items()}
    ours.load_state_dict(state)
    return ours, reference


@pytest.mark.parametrize("pool", ["seq", "grid"])
@pytest.mark.parametrize("shape", SHAPES)
def test_forward_matches_reference(shape, pool):
    ours, reference = paired(shape[1], pool)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(ours(x), reference(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("pool", ["seq", "grid"])
@pytest.mark.parametrize("shape", [(2, 16, 5, 7), (3, 8, 1, 1), (4, 8, 6, 6)])
def test_backward_matches_reference(shape, pool):
    ours, reference = paired(shape[1], pool, seed=3)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(2))
    x_ours, x_ref = x.clone().requires_grad_(), x.clone().requires_grad_()
    weights = torch.randn(shape, generator=torch.Generator().manual_seed(4))
    (ours(x_ours) * weights).sum().backward()
    (reference(x_ref) * weights).sum().backward()
    torch.testing.assert_close(x_ours.grad, x_ref.grad, rtol=1e-5, atol=1e-5)
    ref_grads = dict(reference.named_parameters())
    for name, parameter in ours.named_parameters():
        torch.testing.assert_close(parameter.grad, ref_grads[name].grad.view_as(parameter), rtol=1e-5, atol=1e-5)


def test_gradcheck_float64():
    module = randomize_(ATConv(3, 3, "seq")).double()
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(module, (x,), eps=1e-6, atol=1e-5)


def test_channels_last_input_keeps_memory_format_and_values():
    module = randomize_(ATConv(16))
    x = torch.randn(2, 16, 6, 10)
    out = module(x.contiguous(memory_format=torch.channels_last))
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, module(x))


@pytest.mark.parametrize("height,width", [(1, 1), (2, 2), (3, 5), (9, 9), (7, 13), (72, 36)])
@pytest.mark.parametrize("pool", ["seq", "grid"])
def test_pooling_matrix_is_pytorch_adaptive_pooling(height, width, pool):
    x = torch.randn(2, 5, height, width, dtype=torch.float64)
    pooled = pooling_matrix(height, width, 3, pool, dtype=torch.float64) @ x.flatten(2).transpose(1, 2)
    if pool == "seq":
        expected = F.adaptive_avg_pool1d(x.flatten(2), 9)
    else:
        expected = F.adaptive_avg_pool2d(x, 3).flatten(2)
    torch.testing.assert_close(pooled.transpose(1, 2), expected)


def test_pooling_bins_overlap_like_pytorch():
    # L = 10 into 9 bins: PyTorch's bins [floor(i*L/9), ceil((i+1)*L/9)) overlap; rows must share elements.
    matrix = pooling_matrix(2, 5, 3, "seq", dtype=torch.float64)
    assert matrix.shape == (9, 10)
    torch.testing.assert_close(matrix.sum(1), torch.ones(9, dtype=torch.float64))
    assert ((matrix > 0).sum(0) > 1).any()


@pytest.mark.parametrize("batch,channels,height,width", [(1, 4, 1, 1), (3, 8, 5, 7), (2, 6, 9, 4)])
def test_per_sample_conv_strategies_agree_with_unfold(batch, channels, height, width):
    tokens = torch.randn(batch, height, width, channels)
    kernels = torch.randn(batch, channels, 3, 3)
    patches = F.unfold(tokens.permute(0, 3, 1, 2), 3, padding=1).view(batch, channels, 9, height * width)
    expected = (patches * kernels.flatten(2).unsqueeze(-1)).sum(2).view(batch, channels, height, width)
    for grouped in (False, True):
        out = per_sample_depthwise_conv(tokens, kernels, grouped=grouped)
        torch.testing.assert_close(out.permute(0, 3, 1, 2), expected, rtol=1e-5, atol=1e-5)


def test_kernels_are_per_sample():
    module = randomize_(ATConv(8))
    a, b = torch.randn(1, 8, 6, 6), torch.randn(1, 8, 6, 6)
    together = module(torch.cat([a, b]))
    torch.testing.assert_close(together[0:1], module(a), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(together[1:], module(b), rtol=1e-5, atol=1e-6)
    kernels = module.dynamic_kernels(torch.cat([a, b]).permute(0, 2, 3, 1), module.pooling_matrix(6, 6, a))
    assert not torch.allclose(kernels[0], kernels[1])


def test_differential_modulation_removes_sigmoid_gamma_of_the_mean():
    module = randomize_(ATConv(8))
    tokens = torch.randn(2, 4, 5, 8)
    pool = module.pooling_matrix(4, 5, tokens)
    with torch.no_grad():
        pooled = F.adaptive_avg_pool1d(module.kernel_proj(tokens).flatten(1, 2).transpose(1, 2), 9)
        generated = module.kernel_gen(F.gelu(pooled))  # (B, C, 9) before modulation
        for gamma, kept in ((0.0, 0.5), (20.0, 0.0), (-20.0, 1.0)):
            module.difference_control.fill_(gamma)
            kernels = module.dynamic_kernels(tokens, pool).flatten(2)
            # lambda = sigmoid(gamma): 0.5 at init, ~1 removes the mean (pure contrast), ~0 keeps it
            torch.testing.assert_close(kernels.mean(-1), kept * generated.mean(-1), rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(kernels - kernels.mean(-1, keepdim=True),
                                       generated - generated.mean(-1, keepdim=True), rtol=1e-4, atol=1e-5)
    assert torch.equal(ATConv(8).difference_control, torch.zeros(8))


def test_cpu_autocast_bfloat16_runs_and_stays_close():
    module = randomize_(ATConv(16))
    x = torch.randn(2, 16, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = module(x)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), module(x), rtol=0.1, atol=0.1)


def test_rejects_wrong_channel_count_and_pool():
    with pytest.raises(ValueError, match="expects input of shape"):
        ATConv(8)(torch.randn(1, 4, 5, 5))
    with pytest.raises(ValueError, match="pool must be"):
        ATConv(8, pool="max")


@pytest.mark.parametrize("shape", [(2, 5, 3, 4, 3), (3, 9, 7, 8, 3), (1, 1, 1, 2, 3), (2, 6, 6, 3, 5)])
def test_shifted_formulation_equals_the_convolution_forward_and_backward(shape):
    from reid.models.atconv import shifted_depthwise_conv

    batch, height, width, channels, kernel_size = shape
    generator = torch.Generator().manual_seed(sum(shape))
    tokens = torch.randn(batch, height, width, channels, generator=generator, requires_grad=True)
    kernels = torch.randn(batch, channels, kernel_size, kernel_size, generator=generator, requires_grad=True)
    expected = per_sample_depthwise_conv(tokens, kernels, grouped=True)
    got = shifted_depthwise_conv(tokens, kernels)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    upstream = torch.randn_like(expected)
    expected_grads = torch.autograd.grad(expected, (tokens, kernels), upstream)
    got_grads = torch.autograd.grad(got, (tokens, kernels), upstream)
    for ours, reference in zip(got_grads, expected_grads, strict=True):
        torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-5)
    double = (tokens.detach().double().requires_grad_(), kernels.detach().double().requires_grad_())
    assert torch.autograd.gradcheck(shifted_depthwise_conv, double)


def test_compiled_atconv_takes_the_fusable_path_and_keeps_the_numbers(monkeypatch):
    import torch._dynamo

    from reid.models import atconv as atconv_module

    calls = []
    real = atconv_module.shifted_depthwise_conv

    def counting(tokens, kernels):
        calls.append(tokens.shape)
        return real(tokens, kernels)

    monkeypatch.setattr(atconv_module, "shifted_depthwise_conv", counting)
    torch._dynamo.reset()
    torch.manual_seed(0)
    mixer = ATConv(16).eval()
    x = torch.randn(2, 16, 12, 6)
    with torch.no_grad():
        eager = mixer(x)
        assert not calls
        compiled = torch.compile(mixer, backend="aot_eager")(x)
    assert calls  # traced through the shifted multiply-adds
    torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-5)
    torch._dynamo.reset()
