"""ATConv, the attentive convolution token mixer of AttNet (Yu et al., arXiv 2510.20092).

For every sample ATConv builds its own depthwise K x K kernels from the content of the feature map
("context-to-kernel"), sharpens them by subtracting a learned fraction of their mean (differential kernel
modulation, i.e. lateral inhibition) and convolves the projected values with them.

The module works on NCHW maps through ``forward`` and, inside AttNet, on channel-last tokens of shape
(B, H, W, C) through ``forward_tokens`` so that every projection is a plain GEMM and no layout copy is made
between blocks. Two identities of the released network make it cheap:

* adaptive average pooling and ``kernel_proj`` are both linear (and pooling weights sum to one), so projecting
  after pooling gives the same kernels while ``kernel_proj`` runs on K*K positions instead of H*W;
* pooling to K*K bins is a fixed (K*K, H*W) matrix, so it is one small matrix product.
"""
from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

PoolMode = Literal["seq", "grid"]

# Below this many positions a single grouped convolution beats the per-sample loop on CPU (benchmarks/).
_GROUPED_MAX_POSITIONS = 256


def adaptive_bins(length: int, bins: int) -> list[tuple[int, int]]:
    """Start (inclusive) and end (exclusive) of each of PyTorch's adaptive-average-pool bins.

    Bin i covers [floor(i * length / bins), ceil((i + 1) * length / bins)); neighbouring bins may overlap and,
    when length < bins, several bins cover the same element.
    """
    return [((i * length) // bins, -((-(i + 1) * length) // bins)) for i in range(bins)]


def pooling_matrix(
        height: int,
        width: int,
        kernel_size: int,
        pool: PoolMode = "seq",
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """The (K*K, H*W) matrix whose product with row-major flattened positions is ATConv's pooling.

    Args:
        height: Feature map height.
        width: Feature map width.
        kernel_size: K; the pooled map has K*K values per channel.
        pool: "seq" (the released network): 1-D adaptive average over the flattened H*W sequence into K*K bins.
            "grid" (the paper's text): 2-D K x K adaptive average pool.
        device: Device of the result.
        dtype: Dtype of the result.
    """
    # built in numpy, so a traced graph (ONNX export, torch.compile) holds it as one constant
    matrix = np.zeros((kernel_size * kernel_size, height * width))
    if pool == "seq":
        for row, (start, end) in enumerate(adaptive_bins(height * width, kernel_size * kernel_size)):
            matrix[row, start:end] = 1.0 / (end - start)
    elif pool == "grid":
        grid = matrix.reshape(kernel_size, kernel_size, height, width)
        for i, (top, bottom) in enumerate(adaptive_bins(height, kernel_size)):
            for j, (left, right) in enumerate(adaptive_bins(width, kernel_size)):
                grid[i, j, top:bottom, left:right] = 1.0 / ((bottom - top) * (right - left))
    else:
        raise ValueError(f"pool must be 'seq' or 'grid', got {pool!r}")
    matrix = torch.from_numpy(matrix)
    return matrix.to(device=device, dtype=dtype or torch.get_default_dtype())


def per_sample_depthwise_conv(
        tokens: torch.Tensor,
        kernels: torch.Tensor,
        grouped: bool | None = None,
) -> torch.Tensor:
    """Convolve each sample's channels with that sample's own K x K kernels (zero padding K // 2, stride 1).

    Args:
        tokens: Channel-last values, shape (B, H, W, C).
        kernels: Per-sample depthwise kernels, shape (B, C, K, K).
        grouped: One grouped convolution over B*C channels instead of a loop over the batch of channels-last
            depthwise convolutions. The grouped form needs two layout copies but a single call: it wins on GPUs
            and, on CPUs, for small maps where per-call overhead dominates. None picks by device and map size
            (measured on CPU: the loop wins from about 36x18 up, the grouped call below).

    Returns:
        Channel-last output of shape (B, H, W, C).
    """
    if torch.compiler.is_compiling() or torch.onnx.is_in_onnx_export():
        # fusable by the compiler; in ONNX a grouped convolution would fix the batch size (groups = B * C)
        return shifted_depthwise_conv(tokens, kernels)
    batch, height, width, channels = tokens.shape
    kernel_size = kernels.shape[-1]
    if grouped is None:
        grouped = tokens.device.type != "cpu" or height * width <= _GROUPED_MAX_POSITIONS
    kernels = kernels.to(tokens.dtype)
    if grouped:
        images = tokens.permute(0, 3, 1, 2).reshape(1, batch * channels, height, width)
        out = F.conv2d(images, kernels.reshape(batch * channels, 1, kernel_size, kernel_size),
                       padding=kernel_size // 2, groups=batch * channels)
        # contiguous: Linear on a permuted 4-D view would fall back to a broadcast batched matmul
        return out.view(batch, channels, height, width).permute(0, 2, 3, 1).contiguous()
    images = tokens.permute(0, 3, 1, 2)  # a channels_last NCHW view, no copy
    outputs = [
        F.conv2d(images[i:i + 1], kernels[i].unsqueeze(1), padding=kernel_size // 2, groups=channels)
        for i in range(batch)
    ]
    return torch.cat(outputs).permute(0, 2, 3, 1)


def shifted_depthwise_conv(tokens: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """The per-sample depthwise convolution as K*K shifted multiply-adds on channel-last tokens.

    Only elementwise work on views of one padded tensor: torch.compile fuses it, forward and backward, into a few
    kernels without the two layout copies around a grouped convolution (issue: ATConv on GPUs). In eager mode it
    makes K*K passes over the map, so ``per_sample_depthwise_conv`` uses it only while compiling.

    Args:
        tokens: Channel-last values, shape (B, H, W, C).
        kernels: Per-sample depthwise kernels, shape (B, C, K, K); cross-correlation with zero padding K // 2, as
            ``F.conv2d`` computes it.

    Returns:
        Channel-last output of shape (B, H, W, C).
    """
    batch, height, width, channels = tokens.shape
    kernel_size = kernels.shape[-1]
    pad = kernel_size // 2
    padded = F.pad(tokens, (0, 0, pad, pad, pad, pad))  # (C, W, H) padding, last dimension first
    weights = kernels.to(tokens.dtype).permute(0, 2, 3, 1).unsqueeze(3)  # (B, K, K, 1, C)
    out = padded[:, :height, :width] * weights[:, :1, 0]
    for i in range(kernel_size):
        for j in range(kernel_size):
            if i or j:
                out = out + padded[:, i:i + height, j:j + width] * weights[:, i:i + 1, j]
    return out


class ATConv(nn.Module):
    """Attentive convolution: content-generated, laterally inhibited depthwise kernels.

    Parameter names follow the authors' release (``kernel_proj``, ``kernel_gen``, ``difference_control``,
    ``x_proj``, ``proj``); the 1x1 convolutions are stored as Linear layers (weights (C, C) instead of
    (C, C, 1, 1)), which AttNet's checkpoint filter maps.

    Args:
        dim: Number of channels C.
        kernel_size: K, the size of the generated depthwise kernels.
        pool: "seq" (released network, default) or "grid" (the paper's 2-D pooling), see ``pooling_matrix``.
    """

    def __init__(self, dim: int, kernel_size: int = 3, pool: PoolMode = "seq") -> None:
        super().__init__()
        if pool not in ("seq", "grid"):
            raise ValueError(f"pool must be 'seq' or 'grid', got {pool!r}")
        self.dim = dim
        self.kernel_size = kernel_size
        self.pool = pool
        kernel_area = kernel_size * kernel_size
        self.kernel_proj = nn.Linear(dim, dim)
        self.kernel_gen = nn.Linear(kernel_area, kernel_area)
        # gamma of the differential kernel modulation; sigmoid(0) = 0.5 at init. Excluded from weight decay.
        self.difference_control = nn.Parameter(torch.zeros(dim))
        self.x_proj = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

    def pooling_matrix(self, height: int, width: int, like: torch.Tensor) -> torch.Tensor:
        """This module's pooling matrix for an H x W map, on the device and in the dtype of ``like``."""
        return pooling_matrix(height, width, self.kernel_size, self.pool, like.device, like.dtype)

    def dynamic_kernels(self, tokens: torch.Tensor, pool_matrix: torch.Tensor) -> torch.Tensor:
        """Context-to-kernel generation followed by differential kernel modulation.

        Args:
            tokens: Channel-last input, shape (B, H, W, C).
            pool_matrix: (K*K, H*W) pooling matrix, see ``pooling_matrix``.

        Returns:
            Kernels of shape (B, C, K, K).
        """
        batch, height, width, channels = tokens.shape
        pooled = torch.matmul(pool_matrix.to(tokens.dtype), tokens.reshape(batch, height * width, channels))
        context = F.gelu(self.kernel_proj(pooled))  # (B, K*K, C)
        kernels = self.kernel_gen(context.transpose(1, 2))  # (B, C, K*K), one Linear shared by all channels
        inhibition = torch.sigmoid(self.difference_control).unsqueeze(-1) * kernels.mean(-1, keepdim=True)
        return (kernels - inhibition).view(batch, channels, self.kernel_size, self.kernel_size)

    def forward_tokens(
            self,
            tokens: torch.Tensor,
            pool_matrix: torch.Tensor | None = None,
            out_scale: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """ATConv on channel-last tokens.

        Args:
            tokens: Shape (B, H, W, C).
            pool_matrix: Precomputed pooling matrix for this H x W (AttNet computes it once per stage).
            out_scale: Optional per-channel scale folded into the output projection (AttNet's layer scale).

        Returns:
            Shape (B, H, W, C).
        """
        if pool_matrix is None:
            pool_matrix = self.pooling_matrix(tokens.shape[1], tokens.shape[2], tokens)
        kernels = self.dynamic_kernels(tokens, pool_matrix)
        mixed = per_sample_depthwise_conv(self.x_proj(tokens), kernels)
        weight, bias = self.proj.weight, self.proj.bias
        if out_scale is not None:
            weight, bias = weight * out_scale.unsqueeze(1), bias * out_scale
        return F.linear(mixed, weight, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """ATConv on an NCHW map of any spatial size; the output keeps the input's memory format."""
        if x.ndim != 4 or x.shape[1] != self.dim:
            raise ValueError(f"ATConv({self.dim}) expects input of shape (B, {self.dim}, H, W), got {tuple(x.shape)}")
        out = self.forward_tokens(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
            return out.contiguous(memory_format=torch.channels_last)
        return out.contiguous()

    def extra_repr(self) -> str:
        return f"dim={self.dim}, kernel_size={self.kernel_size}, pool={self.pool!r}"

