"""A slow, literal ACmix Swin in the authors' released layout, written from the paper and the release's key layout.

Fixed input size (224x224 by default), tokens as (B, L, C), downsampling at the end of a stage, ``head`` a plain
Linear, and the persistent buffers the release saves (``relative_position_index``, ``attn_mask``). Attention is
written out (softmax of masked logits); the convolution path follows the release's sequence of reshapes, with
``fc`` applied as a 1x1 convolution over the (3 x heads) axis. Tests use it as the oracle for
``reid.models.acmix`` and to write checkpoints in the released layout (``{"model": state_dict}``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

CONFIGS = {
    "acmix_swin_tiny_patch4_window7_224": dict(depths=(2, 2, 6, 2), heads=(3, 6, 12, 24)),
    "acmix_swin_small_patch4_window7_224": dict(depths=(2, 2, 18, 2), heads=(3, 6, 12, 24)),
}


def windows_of(x: torch.Tensor, size: int) -> torch.Tensor:
    """(B, H, W, C) -> (B * windows, size * size, C), windows in row-major order."""
    batch, height, width, channels = x.shape
    x = x.reshape(batch, height // size, size, width // size, size, channels).transpose(2, 3)
    return x.reshape(-1, size * size, channels)


def map_of(windows: torch.Tensor, size: int, height: int, width: int) -> torch.Tensor:
    channels = windows.shape[-1]
    x = windows.reshape(-1, height // size, width // size, size, size, channels).transpose(2, 3)
    return x.reshape(-1, height, width, channels)


class RefACmixAttention(nn.Module):
    def __init__(self, dim: int, heads: int, window: int) -> None:
        super().__init__()
        self.dim, self.heads, self.window = dim, heads, window
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        ys, xs = torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
        dy = ys.flatten()[:, None] - ys.flatten()[None, :] + window - 1
        dx = xs.flatten()[:, None] - xs.flatten()[None, :] + window - 1
        self.register_buffer("relative_position_index", dy * (2 * window - 1) + dx)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.fc = nn.Conv2d(3 * heads, 9, 1)
        self.dep_conv = nn.Conv2d(9 * (dim // heads), dim, 3, padding=1, groups=dim // heads, bias=False)
        self.rate1 = nn.Parameter(torch.tensor([0.5]))
        self.rate2 = nn.Parameter(torch.tensor([0.5]))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        batch, height, width, channels = x.shape
        head_dim = channels // self.heads
        qkv = self.qkv(x)
        # convolution path: (B, 3*heads, H*W, head_dim) -> fc -> (B, 9, H*W, head_dim) -> (B, head_dim*9, H, W)
        grouped = qkv.reshape(batch, height * width, 3 * self.heads, head_dim).permute(0, 2, 1, 3)
        shifted = self.fc(grouped).permute(0, 3, 1, 2).reshape(batch, head_dim * 9, height, width)
        conv = self.dep_conv(shifted).permute(0, 2, 3, 1)
        # attention path, window by window
        windows = windows_of(qkv, self.window)
        n = self.window ** 2
        q, k, v = windows.reshape(-1, n, 3, self.heads, head_dim).permute(2, 0, 3, 1, 4)
        logits = (q * head_dim ** -0.5) @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.flatten()].reshape(n, n, -1)
        logits = logits + bias.permute(2, 0, 1)
        if mask is not None:
            count = mask.shape[0]
            logits = (logits.reshape(-1, count, self.heads, n, n) + mask[None, :, None]).reshape(-1, self.heads, n, n)
        out = (logits.softmax(-1) @ v).transpose(1, 2).reshape(-1, n, channels)
        attention = map_of(self.proj(out), self.window, height, width)
        return self.rate1 * attention + self.rate2 * conv


class RefMlp(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class RefBlock(nn.Module):
    def __init__(self, dim: int, heads: int, resolution: int, window: int, shift: int) -> None:
        super().__init__()
        if resolution <= window:
            window, shift = resolution, 0
        self.resolution, self.shift = resolution, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = RefACmixAttention(dim, heads, window)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = RefMlp(dim)
        if shift:
            regions = torch.zeros(resolution, resolution)
            bounds = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
            for label, (rows, cols) in enumerate((r, c) for r in bounds for c in bounds):
                regions[rows, cols] = label
            labels = windows_of(regions[None, :, :, None], window)[..., 0]
            self.register_buffer("attn_mask", (labels[:, None, :] != labels[:, :, None]).float() * -100.0)
        else:
            self.attn_mask = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, channels = x.shape
        y = self.norm1(x).reshape(batch, self.resolution, self.resolution, channels)
        y = torch.roll(y, (-self.shift, -self.shift), (1, 2))
        y = torch.roll(self.attn(y, self.attn_mask), (self.shift, self.shift), (1, 2))
        x = x + y.reshape(batch, -1, channels)
        return x + self.mlp(self.norm2(x))


class RefMerging(nn.Module):
    def __init__(self, dim: int, resolution: int) -> None:
        super().__init__()
        self.resolution = resolution
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(x.shape[0], self.resolution, self.resolution, -1)
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
        return self.reduction(self.norm(x.flatten(1, 2)))


class RefLayer(nn.Module):
    def __init__(self, dim: int, depth: int, heads: int, resolution: int, last: bool) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(RefBlock(dim, heads, resolution, 7, 0 if i % 2 == 0 else 3) for i in range(depth))
        self.downsample = None if last else RefMerging(dim, resolution)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x if self.downsample is None else self.downsample(x)


class RefPatchEmbed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, 96, 4, 4)
        self.norm = nn.LayerNorm(96)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x).flatten(2).transpose(1, 2))


class RefACmixSwin(nn.Module):
    def __init__(self, name: str, image_size: int = 224, num_classes: int = 1000) -> None:
        super().__init__()
        depths, heads = CONFIGS[name]["depths"], CONFIGS[name]["heads"]
        self.patch_embed = RefPatchEmbed()
        self.layers = nn.ModuleList(
            RefLayer(96 * 2 ** i, depths[i], heads[i], image_size // 4 // 2 ** i, i == 3) for i in range(4))
        self.norm = nn.LayerNorm(768)
        self.head = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        for layer in self.layers:
            x = layer(x)
        return self.head(self.norm(x).mean(1))


def randomize_(model: nn.Module, seed: int) -> nn.Module:
    """Random weights of a trained network's scale (including the shift kernels and the mixing rates), in place;
    buffers are kept."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith(("rate1", "rate2")):
                parameter.copy_(torch.rand(parameter.shape, generator=generator) + 0.25)
            elif "norm" in name and name.endswith("weight"):
                parameter.copy_(1 + 0.1 * torch.randn(parameter.shape, generator=generator))
            else:
                parameter.copy_(0.05 * torch.randn(parameter.shape, generator=generator))
    return model
