"""A slow, literal AttNet in the authors' released layout, written straight from the paper and the key layout
of the authors' released checkpoints.

Everything is NCHW with 1x1 convolutions; ATConv pools with PyTorch's adaptive pooling and applies the
per-sample kernels with an explicit unfold. Tests use it as the oracle for the fast implementation and to
write checkpoints in the released key layout.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from reid.models.attnet import VARIANTS


class RefATConv(nn.Module):
    def __init__(self, dim: int, kernel_size: int = 3, pool: str = "seq") -> None:
        super().__init__()
        self.kernel_size, self.pool = kernel_size, pool
        self.kernel_proj = nn.Conv2d(dim, dim, 1)
        self.kernel_gen = nn.Linear(kernel_size ** 2, kernel_size ** 2)
        self.difference_control = nn.Parameter(torch.zeros(dim))
        self.x_proj = nn.Conv2d(dim, dim, 1)
        self.proj = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        k = self.kernel_size
        context = self.kernel_proj(x)
        if self.pool == "seq":
            pooled = F.adaptive_avg_pool1d(context.flatten(2), k * k)  # (B, C, K*K) over the row-major sequence
        else:
            pooled = F.adaptive_avg_pool2d(context, k).flatten(2)
        kernels = self.kernel_gen(F.gelu(pooled))
        kernels = kernels - torch.sigmoid(self.difference_control)[None, :, None] * kernels.mean(-1, keepdim=True)
        values = self.x_proj(x)
        patches = F.unfold(values, k, padding=k // 2).view(batch, channels, k * k, height * width)
        mixed = (patches * kernels.unsqueeze(-1)).sum(2).view(batch, channels, height, width)
        return self.proj(mixed)


class RefLayerNorm2d(nn.LayerNorm):
    """Layer norm over the channels of an NCHW map."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps).permute(
            0, 3, 1, 2)


class RefLayerScale(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), 1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma[:, None, None]


class RefRmsNorm2d(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt((x * x).mean(1, keepdim=True) + 1e-6) * self.weight[:, None, None]


class RefGLU(nn.Module):
    def __init__(self, dim: int, exp_rate: float, dconv: bool, norm: bool) -> None:
        super().__init__()
        hidden = int(2 * int(dim * exp_rate) / 3)
        self.fc1 = nn.Conv2d(dim, 2 * hidden, 1)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden) if dconv else None
        self.norm_layer = RefRmsNorm2d(hidden) if norm else None
        self.fc2 = nn.Conv2d(hidden, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, v = self.fc1(x).chunk(2, dim=1)
        if self.dwconv is not None:
            a = self.dwconv(a)
        x = F.gelu(a) * v
        if self.norm_layer is not None:
            x = self.norm_layer(x)
        return self.fc2(x)


class RefBlock(nn.Module):
    def __init__(self, dim: int, exp_rate: float, dconv: bool, norm: bool, layer_scale: bool, pool: str) -> None:
        super().__init__()
        self.norm_1 = RefLayerNorm2d(dim, eps=1e-6)
        self.token_mixer = RefATConv(dim, 3, pool)
        self.norm_2 = RefLayerNorm2d(dim, eps=1e-6)
        self.channel_mixer = RefGLU(dim, exp_rate, dconv, norm)
        if layer_scale:
            self.layer_scale_1, self.layer_scale_2 = RefLayerScale(dim), RefLayerScale(dim)
        else:
            self.layer_scale_1 = self.layer_scale_2 = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.layer_scale_1(self.token_mixer(self.norm_1(x)))
        return x + self.layer_scale_2(self.channel_mixer(self.norm_2(x)))


def _conv_bn(in_chs: int, out_chs: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_chs, out_chs, 3, 2, 1, bias=False), nn.BatchNorm2d(out_chs))


class RefAttNet(nn.Module):
    def __init__(self, variant: str, num_classes: int = 1000, pool: str = "seq", in_chans: int = 3) -> None:
        super().__init__()
        depths, dims, dconv, norm, layer_scale, _ = VARIANTS[variant]
        stem = nn.Sequential(_conv_bn(in_chans, dims[0] // 2), nn.GELU(), _conv_bn(dims[0] // 2, dims[0]))
        self.downsample_layers = nn.ModuleList([stem] + [_conv_bn(dims[i - 1], dims[i]) for i in range(1, 4)])
        self.stages = nn.ModuleList(
            nn.Sequential(*[RefBlock(dims[i], (8, 8, 4, 4)[i], dconv, norm, layer_scale, pool) for _ in range(d)])
            for i, d in enumerate(depths)
        )
        self.norm = nn.LayerNorm(dims[-1], eps=1e-5)
        self.head = nn.Linear(dims[-1], num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        for downsample, stage in zip(self.downsample_layers, self.stages, strict=True):
            x = stage(downsample(x))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.forward_features(x).mean((2, 3))))


def randomize_(module: nn.Module, seed: int = 0) -> nn.Module:
    """Give every parameter and BatchNorm statistic a non-trivial value, so no term of the network is inert."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if not tensor.is_floating_point():
                continue
            if name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
            elif name.endswith(("gamma", "norm_layer.weight")) or "norm_" in name and name.endswith("weight"):
                tensor.copy_(torch.rand(tensor.shape, generator=generator) * 0.5 + 0.5)
            else:
                fan_in = tensor[0].numel() if tensor.ndim > 1 else 1
                tensor.copy_(torch.randn(tensor.shape, generator=generator) / fan_in ** 0.5 * 0.5)
    return module
