"""The non-local block of AGW (Ye et al., TPAMI 2021), as its model.py writes it: an embedded-Gaussian-free
non-local operation (dot product divided by the number of positions, no softmax) with a residual whose BatchNorm
starts at zero, so a new block starts as the identity."""
from __future__ import annotations

import torch
from torch import nn


class NonLocal(nn.Module):
    """``x + W(f(x) g(x))`` over all positions of an NCHW map.

    Args:
        channels: The map's channels.
        inner: The width of theta, phi and g: 1 in AGW's model.py (mangye16/Cross-Modal-Re-ID-baseline, line 21,
            and LLCM's copy of it, which compute it as ``reduc_ratio // reduc_ratio``), ``channels // 2`` in the
            non-local paper (Wang et al., CVPR 2018).
    """

    def __init__(self, channels: int, inner: int) -> None:
        super().__init__()
        self.inner = inner
        self.g = nn.Conv2d(channels, inner, 1)
        self.theta = nn.Conv2d(channels, inner, 1)
        self.phi = nn.Conv2d(channels, inner, 1)
        self.W = nn.Sequential(nn.Conv2d(inner, channels, 1), nn.BatchNorm2d(channels))
        nn.init.zeros_(self.W[1].weight)
        nn.init.zeros_(self.W[1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = x.shape
        values = self.g(x).flatten(2).transpose(1, 2)  # (B, HW, inner)
        queries = self.theta(x).flatten(2).transpose(1, 2)
        keys = self.phi(x).flatten(2)  # (B, inner, HW)
        attention = queries @ keys / (height * width)  # (B, HW, HW): divided by the positions, as AGW does
        mixed = (attention @ values).transpose(1, 2).reshape(batch, self.inner, height, width)
        return x + self.W(mixed)
