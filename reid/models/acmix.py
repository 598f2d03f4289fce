"""ACmix: self-attention and convolution sharing their 1x1 projections (Pan et al., CVPR 2022), in Swin.

One ``qkv`` projection feeds two paths. The attention path is Swin's window attention (relative position bias,
shifted windows). The convolution path mixes the 3 x heads projected maps of each head channel into K*K maps with
a light fully connected layer (``fc``) and aggregates them with a grouped KxK convolution (``dep_conv``, one group
per head channel, initialised as K*K shifts). The block returns ``rate1 * attention + rate2 * convolution``.

The module tree and parameter names follow the authors' release (LeapLabTHU/ACmix,
``Swin-Transformer/models/swin_transformer_acmix.py``), so a checkpoint saved by their code (``{"model": ...}``)
loads through ``checkpoint_filter_fn``. Two details of the release are kept because its weights depend on them:
``dep_conv`` has no bias (the release's initialisation sets it to None), and the convolution path's output
channels are ordered head-channel-major (d * heads + h) while the attention path's are head-major.

The network is timm's ``SwinTransformer`` with ACmix in every block, so it inherits timm's contract (features_only,
``set_input_size``, any input size: maps that are not whole windows are padded as timm's Swin pads them; the
convolution path sees the unpadded map). Registered on ``import reid.models`` as
``acmix_swin_tiny_patch4_window7_224`` and ``acmix_swin_small_patch4_window7_224``.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import resize_rel_pos_bias_table, to_2tuple, trunc_normal_
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models import swin_transformer as timm_swin
from timm.models.swin_transformer import SwinTransformer, SwinTransformerBlock, window_partition, window_reverse
from torch import nn

from reid.models.weights import check_state_dict, state_dict_from

__all__ = ["ACmix", "ACmixSwinBlock", "ACmixSwinTransformer", "checkpoint_filter_fn", "remap_released_keys"]


def _window_padding(size: tuple[int, int], window: tuple[int, int]) -> tuple[int, int]:
    return (window[0] - size[0] % window[0]) % window[0], (window[1] - size[1] % window[1]) % window[1]


class ACmix(nn.Module):
    """The ACmix operator: window self-attention and a shift-initialised convolution on shared projections.

    Called on an NCHW map it returns an NCHW map of the same size (maps that are not whole windows are padded
    with zeros for the attention path, as in timm's Swin). Swin blocks call ``mix`` on their channel-last tokens.

    Args:
        dim: Input and output channels.
        num_heads: Attention heads; ``dim`` must be divisible by it.
        window_size: Attention window, an int or (height, width).
        kernel_size: Kernel of the convolution path (3 in the release).
        qkv_bias: Bias of the shared projection.
        attn_drop: Dropout on the attention weights.
        proj_drop: Dropout on the mixed output.
    """

    def __init__(self, dim: int, num_heads: int, window_size: int | tuple[int, int] = 7, kernel_size: int = 3,
                 qkv_bias: bool = True, attn_drop: float = 0.0, proj_drop: float = 0.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.dim, self.num_heads, self.head_dim = dim, num_heads, dim // num_heads
        self.window_size = to_2tuple(window_size)
        self.kernel_size = kernel_size
        self.attn_drop = attn_drop
        win_h, win_w = self.window_size
        self.relative_position_bias_table = nn.Parameter(torch.empty((2 * win_h - 1) * (2 * win_w - 1), num_heads))
        self.register_buffer("relative_position_index", timm_swin.get_relative_position_index(win_h, win_w),
                             persistent=False)
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.fc = nn.Conv2d(3 * num_heads, kernel_size ** 2, 1)
        self.dep_conv = nn.Conv2d(kernel_size ** 2 * self.head_dim, dim, kernel_size, padding=kernel_size // 2,
                                  groups=self.head_dim, bias=False)
        self.rate1 = nn.Parameter(torch.empty(1))
        self.rate2 = nn.Parameter(torch.empty(1))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The release's initialisation: truncated-normal projections, both paths weighted 0.5, and a
        convolution that starts as the sum of the K*K shifts of its input maps."""
        trunc_normal_(self.relative_position_bias_table, std=0.02)
        for linear in (self.qkv, self.proj):
            trunc_normal_(linear.weight, std=0.02)
            if linear.bias is not None:
                nn.init.zeros_(linear.bias)
        nn.init.constant_(self.rate1, 0.5)
        nn.init.constant_(self.rate2, 0.5)
        k = self.kernel_size
        shifts = torch.zeros(k * k, k, k)
        for index in range(k * k):
            shifts[index, index // k, index % k] = 1.0
        with torch.no_grad():
            self.dep_conv.weight.copy_(shifts.expand_as(self.dep_conv.weight))

    def set_window_size(self, window_size: int | tuple[int, int]) -> None:
        """Change the window, resizing the relative position table as timm's window attention does."""
        window_size = to_2tuple(window_size)
        if window_size == self.window_size:
            return
        old = self.window_size
        self.window_size = window_size
        win_h, win_w = window_size
        with torch.no_grad():
            table = resize_rel_pos_bias_table(self.relative_position_bias_table, new_window_size=window_size,
                                              new_bias_shape=((2 * win_h - 1) * (2 * win_w - 1), self.num_heads),
                                              old_window_size=old)
        self.relative_position_bias_table = nn.Parameter(table)
        self.register_buffer("relative_position_index", timm_swin.get_relative_position_index(
            win_h, win_w, device=table.device), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        pad_h, pad_w = _window_padding((height, width), self.window_size)
        tokens = F.pad(x.permute(0, 2, 3, 1), (0, 0, 0, pad_w, 0, pad_h))
        return self.mix(tokens, (height, width)).permute(0, 3, 1, 2)

    def mix(self, tokens: torch.Tensor, size: tuple[int, int], mask: torch.Tensor | None = None) -> torch.Tensor:
        """ACmix of channel-last tokens.

        Args:
            tokens: (B, Hp, Wp, C), padded at the bottom and right to whole windows.
            size: (H, W) of the map before padding; the convolution path sees only this region.
            mask: Swin's (windows, N, N) additive mask for shifted windows, or None.

        Returns:
            (B, H, W, C).
        """
        height, width = size
        qkv = self.qkv(tokens)
        convolution = self._convolution(qkv[:, :height, :width])
        attention = self._window_attention(qkv, mask)[:, :height, :width]
        return self.proj_drop(self.rate1 * attention + self.rate2 * convolution)

    def _convolution(self, qkv: torch.Tensor) -> torch.Tensor:
        # For each head channel d, fc mixes the 3 x heads projections into K*K maps (channel d * K*K + k), which
        # the grouped convolution aggregates (group d) into `heads` output channels (channel d * heads + h).
        batch, height, width, _ = qkv.shape
        per_channel = qkv.unflatten(-1, (3 * self.num_heads, self.head_dim)).transpose(-1, -2)
        maps = F.linear(per_channel, self.fc.weight.flatten(1), self.fc.bias)  # (B, H, W, head_dim, K*K)
        maps = maps.reshape(batch, height, width, -1).permute(0, 3, 1, 2)
        return self.dep_conv(maps).permute(0, 2, 3, 1)

    def _window_attention(self, qkv: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        # Windows and heads share one axis, so the attention is a 4-D product whose bias (and shift mask) broadcasts
        # over the batch: no batch-sized mask copy, and a batch axis that stays dynamic in an ONNX export.
        _, padded_h, padded_w, _ = qkv.shape
        count = (padded_h // self.window_size[0]) * (padded_w // self.window_size[1])
        area = self.window_size[0] * self.window_size[1]
        windows = window_partition(qkv, self.window_size).reshape(-1, count, area, 3, self.num_heads, self.head_dim)
        windows = windows.permute(3, 0, 1, 4, 2, 5).reshape(3, -1, count * self.num_heads, area, self.head_dim)
        query, key, value = windows.unbind(0)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        bias = bias.view(area, area, self.num_heads).permute(2, 0, 1)
        bias = bias.expand(count, -1, -1, -1) if mask is None else bias + mask.unsqueeze(1)
        out = F.scaled_dot_product_attention(query, key, value,
                                             attn_mask=bias.reshape(1, -1, area, area).to(query.dtype),
                                             dropout_p=self.attn_drop if self.training else 0.0)
        out = out.view(-1, count, self.num_heads, area, self.head_dim).transpose(2, 3).reshape(-1, area, self.dim)
        out = self.proj(out)
        return window_reverse(out.view(-1, *self.window_size, self.dim), self.window_size, padded_h, padded_w)


class ACmixSwinBlock(SwinTransformerBlock):
    """A Swin block whose (shifted) window attention is ACmix; norms, MLP and drop-path are timm's."""

    def _attn(self, x: torch.Tensor) -> torch.Tensor:
        _, height, width, _ = x.shape
        shifted = any(self.shift_size)
        if shifted:
            x = torch.roll(x, shifts=(-self.shift_size[0], -self.shift_size[1]), dims=(1, 2))
        pad_h, pad_w = _window_padding((height, width), self.window_size)
        padded = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
        mask = self.get_attn_mask(padded) if self.dynamic_mask else self.attn_mask
        mixed = self.attn.mix(padded, (height, width), mask)
        return torch.roll(mixed, shifts=self.shift_size, dims=(1, 2)) if shifted else mixed


class ACmixSwinTransformer(SwinTransformer):
    """timm's Swin Transformer with ACmix in place of window attention in every block.

    Args:
        kernel_size: Kernel of ACmix's convolution path.
        **kwargs: timm ``SwinTransformer`` arguments (img_size, depths, num_heads, window_size, drop_path_rate...).
    """

    def __init__(self, kernel_size: int = 3, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        for block in self.modules():
            if isinstance(block, SwinTransformerBlock):
                attention = block.attn
                block.__class__ = ACmixSwinBlock  # only _attn changes
                block.attn = ACmix(block.dim, attention.num_heads, block.window_size, kernel_size,
                                   qkv_bias=attention.qkv.bias is not None, attn_drop=attention.attn_drop.p,
                                   proj_drop=attention.proj_drop.p)


def remap_released_keys(state_dict: Mapping[str, torch.Tensor], model: ACmixSwinTransformer) -> dict[str, torch.Tensor]:
    """Released layout -> this model's, by timm's Swin filter (the release keeps Swin's original layout):
    downsampling moves to the start of the next stage, ``head`` becomes ``head.fc``, buffers
    (``relative_position_index``, ``attn_mask``) are dropped and relative position tables are resized to this
    model's windows. Keys already in this layout pass through unchanged."""
    return timm_swin.checkpoint_filter_fn(dict(state_dict), model)


def checkpoint_filter_fn(state_dict: Mapping[str, Any], model: ACmixSwinTransformer) -> dict[str, torch.Tensor]:
    """Map a checkpoint saved by the authors' code (``{"model": state_dict}``), or one of ours, to this model.

    Raises ``CheckpointMismatchError`` naming the keys when the checkpoint is not an ACmix Swin of this shape. The
    classifier and the patch embedding are left for timm to adapt (num_classes, in_chans).
    """
    out = remap_released_keys(state_dict_from(state_dict), model)
    check_state_dict(out, model.state_dict(), ignore_prefixes=("head.", "patch_embed.proj."))
    return out


def _create_acmix_swin(variant: str, pretrained: bool = False, **kwargs: Any) -> ACmixSwinTransformer:
    out_indices = kwargs.pop("out_indices", tuple(range(len(kwargs.get("depths", (1, 1, 1, 1))))))
    return build_model_with_cfg(
        ACmixSwinTransformer, variant, pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(flatten_sequential=True, out_indices=out_indices),
        **kwargs,
    )


def _cfg(**kwargs: Any) -> dict[str, Any]:
    return {
        "url": "", "num_classes": 1000, "input_size": (3, 224, 224), "pool_size": (7, 7),
        "crop_pct": 0.9, "interpolation": "bicubic", "fixed_input_size": True,
        "mean": IMAGENET_DEFAULT_MEAN, "std": IMAGENET_DEFAULT_STD,
        "first_conv": "patch_embed.proj", "classifier": "head.fc", "license": "mit",
        "paper_ids": "arXiv:2111.14556",
        "paper_name": "On the Integration of Self-Attention and Convolution",
        **kwargs,
    }


# The authors distribute their ImageNet-1K weights as files (see reid.models.pretrained.RELEASED_WEIGHTS); pass
# one with pretrained_cfg_overlay=dict(file="ACmix_Swin_T.pth") or `reid train --pretrained FILE`.
default_cfgs = generate_default_cfgs({
    "acmix_swin_tiny_patch4_window7_224.in1k": _cfg(),
    "acmix_swin_small_patch4_window7_224.in1k": _cfg(),
})


@register_model
def acmix_swin_tiny_patch4_window7_224(pretrained: bool = False, **kwargs: Any) -> ACmixSwinTransformer:
    """Swin-T with ACmix (the release's configuration: drop-path 0.2)."""
    args = dict(patch_size=4, window_size=7, embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24),
                drop_path_rate=0.2)
    return _create_acmix_swin("acmix_swin_tiny_patch4_window7_224", pretrained, **dict(args, **kwargs))


@register_model
def acmix_swin_small_patch4_window7_224(pretrained: bool = False, **kwargs: Any) -> ACmixSwinTransformer:
    """Swin-S with ACmix (the release's configuration: drop-path 0.3)."""
    args = dict(patch_size=4, window_size=7, embed_dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24),
                drop_path_rate=0.3)
    return _create_acmix_swin("acmix_swin_small_patch4_window7_224", pretrained, **dict(args, **kwargs))
