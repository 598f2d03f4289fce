"""ATConv as a drop-in replacement for the attention of timm's Swin and PVTv2 (the paper's controlled experiment).

``with_atconv(model)`` swaps every attention module of a Swin Transformer or a PVTv2 for an ATConv of the same
width and keeps everything else (patch embedding, norms, MLPs, downsampling, drop-path). Swin blocks then mix
the whole map instead of shifted windows (no window partition, no relative position bias); PVTv2 blocks lose
their spatial-reduction attention. Registered models: ``atconv_swin_tiny``, ``atconv_pvt_v2_b1``,
``atconv_pvt_v2_b2`` (no released weights: they are trained from scratch or pretrained with ``reid pretrain``).
"""
from __future__ import annotations

import timm
import torch
from timm.models import register_model
from timm.models.pvt_v2 import Block as PvtBlock
from timm.models.swin_transformer import SwinTransformerBlock
from torch import nn

from reid.models.atconv import ATConv


class SequenceATConv(ATConv):
    """ATConv on a PVTv2 block's token sequence (B, H*W, C) with its feature size, as PVTv2's attention is called."""

    def forward(self, x: torch.Tensor, feat_size: list[int]) -> torch.Tensor:  # type: ignore[override]
        height, width = feat_size
        return self.forward_tokens(x.reshape(x.shape[0], height, width, x.shape[2])).flatten(1, 2)


class ATConvSwinBlock(SwinTransformerBlock):
    """A Swin block whose token mixing is ATConv over the whole (B, H, W, C) map instead of window attention."""

    def _attn(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn.forward_tokens(x)


def with_atconv(model: nn.Module) -> nn.Module:
    """``model`` (a timm Swin Transformer or PVTv2) with every attention module replaced by ATConv, in place.

    Raises:
        ValueError: The model has no Swin or PVTv2 blocks.
    """
    replaced = 0
    for block in model.modules():
        if isinstance(block, SwinTransformerBlock):
            block.__class__ = ATConvSwinBlock  # only _attn changes; the block keeps its norms, MLP, drop-path
            block.attn = ATConv(block.dim)
            replaced += 1
        elif isinstance(block, PvtBlock):
            block.attn = SequenceATConv(block.norm1.normalized_shape[0])
            replaced += 1
    if not replaced:
        raise ValueError(f"{type(model).__name__} has no Swin or PVTv2 attention to replace")
    return model


def _create(base: str, pretrained: bool, **kwargs) -> nn.Module:
    if pretrained:
        raise ValueError("ATConv drop-in models have no released weights; pretrain them with `reid pretrain`")
    model = with_atconv(timm.create_model(base, **kwargs))
    # the base's pretrained cfg names weights for another network: keep its normalisation, drop its file
    model.pretrained_cfg = {**model.pretrained_cfg, "hf_hub_id": None, "url": None, "file": None}
    return model


@register_model
def atconv_swin_tiny(pretrained: bool = False, **kwargs) -> nn.Module:
    """Swin-T with ATConv in place of (shifted) window attention."""
    return _create("swin_tiny_patch4_window7_224", pretrained, **kwargs)


@register_model
def atconv_pvt_v2_b1(pretrained: bool = False, **kwargs) -> nn.Module:
    """PVTv2-B1 with ATConv in place of spatial-reduction attention."""
    return _create("pvt_v2_b1", pretrained, **kwargs)


@register_model
def atconv_pvt_v2_b2(pretrained: bool = False, **kwargs) -> nn.Module:
    """PVTv2-B2 with ATConv in place of spatial-reduction attention."""
    return _create("pvt_v2_b2", pretrained, **kwargs)
