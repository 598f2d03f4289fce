"""AttNet: a four-stage hierarchical backbone built from ATConv blocks (Yu et al., arXiv 2510.20092).

The module tree and parameter names follow the authors' release, so their ImageNet checkpoints load through
``checkpoint_filter_fn`` with no renaming by the user. Inside a stage the activations stay channel-last
tokens (B, H, W, C): norms and projections are plain GEMMs over the last dimension, and because every
convolution runs on channels_last memory, going between tokens and NCHW maps is a free view. Layer scale and
the GLU's RMS-norm weight are folded into the following projection's weights on every call (a C x C product,
cheap next to the activations), which removes two element-wise passes per block in training and inference.

Registered in timm on ``import reid.models`` as attnet_xxs, attnet_xs, attnet_s, attnet_t1 ... attnet_t4.
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import DropPath, LayerScale, RmsNorm, trunc_normal_
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models._features import feature_take_indices
from timm.models._manipulate import named_apply
from torch import nn
from torch.utils.checkpoint import checkpoint

from reid.models.atconv import ATConv, PoolMode, pooling_matrix
from reid.models.weights import check_state_dict, state_dict_from

__all__ = ["AttNet", "AttNetBlock", "GLU", "VARIANTS", "checkpoint_filter_fn", "released_state_dict",
           "remap_released_keys"]


def glu_hidden_dim(dim: int, exp_rate: float) -> int:
    """Hidden width of the GLU channel mixer: int(2 * int(dim * exp_rate) / 3)."""
    return int(2 * int(dim * exp_rate) / 3)


def _in_place() -> bool:
    """Whether buffers may be reused in place: without autograd, except while exporting to ONNX (whose tracer
    does not follow in-place updates of views)."""
    return not torch.is_grad_enabled() and not torch.onnx.is_in_onnx_export()


def _gelu_mul(gate: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """GELU(gate) * value; without autograd, computed in gate's buffer (large fresh buffers cost page faults)."""
    if not _in_place():
        return F.gelu(gate) * value
    return torch.ops.aten.gelu_(gate).mul_(value)


def _residual(tokens: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
    """tokens + branch; without autograd, summed into the branch's own (fresh, private) buffer."""
    return branch.add_(tokens) if _in_place() else tokens + branch


class GLU(nn.Module):
    """Gated channel mixer: fc2(norm(GELU(dwconv(a)) * v)) with (a, v) = fc1(x).

    The released ``fc1`` produces (a, v) stacked along channels; here it is two Linear layers, ``fc1_gate``
    (a) and ``fc1_value`` (v), so neither half is a strided slice that would have to be copied.

    Args:
        dim: Input and output channels.
        exp_rate: Expansion rate; hidden width is int(2 * int(dim * exp_rate) / 3).
        use_dwconv: 3x3 depthwise convolution on the gate branch.
        use_norm: Weight-only RMS norm over hidden channels before ``fc2`` (its weight is folded into ``fc2``).
    """

    def __init__(self, dim: int, exp_rate: float, use_dwconv: bool = True, use_norm: bool = True) -> None:
        super().__init__()
        hidden = glu_hidden_dim(dim, exp_rate)
        self.hidden = hidden
        self.fc1_gate = nn.Linear(dim, hidden)
        self.fc1_value = nn.Linear(dim, hidden)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden) if use_dwconv else None
        self.norm_layer = RmsNorm(hidden, eps=1e-6) if use_norm else None
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, tokens: torch.Tensor, out_scale: torch.Tensor | None = None) -> torch.Tensor:
        """Channel mixing of (B, H, W, C) tokens; ``out_scale`` is a per-channel scale folded into ``fc2``."""
        gate = self.fc1_gate(tokens)
        if self.dwconv is not None:
            gate = self.dwconv(gate.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        hidden = _gelu_mul(gate, self.fc1_value(tokens))
        weight, bias = self.fc2.weight, self.fc2.bias
        if out_scale is not None:
            weight, bias = weight * out_scale.unsqueeze(1), bias * out_scale
        if self.norm_layer is None:
            return F.linear(hidden, weight, bias)
        # fc2(hidden * rstd * w) = rstd * (hidden @ (W * w)^T) + b: the per-token RMS scale is applied to the
        # C-wide output rather than the wider hidden tensor, and the norm weight lives in the GEMM.
        mean_square = torch.linalg.vector_norm(hidden, dim=-1, keepdim=True).square() / self.hidden
        rstd = torch.rsqrt(mean_square + self.norm_layer.eps)
        return torch.addcmul(bias, torch.matmul(hidden, (weight * self.norm_layer.weight).t()), rstd)


class AttNetBlock(nn.Module):
    """x + DropPath(LayerScale(ATConv(LN(x)))), then x + DropPath(LayerScale(GLU(LN(x)))), on (B, H, W, C)."""

    def __init__(
            self,
            dim: int,
            exp_rate: float,
            kernel_size: int = 3,
            pool: PoolMode = "seq",
            glu_dconv: bool = True,
            glu_norm: bool = True,
            use_layer_scale: bool = True,
            drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.norm_1 = nn.LayerNorm(dim, eps=1e-6)
        self.token_mixer = ATConv(dim, kernel_size, pool)
        self.layer_scale_1 = LayerScale(dim, init_values=1e-6) if use_layer_scale else None
        self.norm_2 = nn.LayerNorm(dim, eps=1e-6)
        self.channel_mixer = GLU(dim, exp_rate, use_dwconv=glu_dconv, use_norm=glu_norm)
        self.layer_scale_2 = LayerScale(dim, init_values=1e-6) if use_layer_scale else None
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, tokens: torch.Tensor, pool_matrix: torch.Tensor | None = None) -> torch.Tensor:
        scale_1 = self.layer_scale_1.gamma if self.layer_scale_1 is not None else None
        scale_2 = self.layer_scale_2.gamma if self.layer_scale_2 is not None else None
        tokens = _residual(tokens, self.drop_path(self.token_mixer.forward_tokens(self.norm_1(tokens), pool_matrix,
                                                                                 scale_1)))
        return _residual(tokens, self.drop_path(self.channel_mixer(self.norm_2(tokens), scale_2)))


# Inference on CPU runs a stage on groups of samples whose GLU hidden tensor has at most this many elements
# (~11 MB in float32): the activations then stay in the last-level cache and reuse heap memory instead of
# faulting in fresh pages. Measured 8-10% faster for AttNet-T1 at batch 8 (benchmarks/bench_backbones.py).
_CPU_INFERENCE_TILE = 2_800_000


class AttNetStage(nn.Sequential):
    """The blocks of one stage (released keys ``stages.{i}.{j}``); the pooling matrix is built once per call."""

    def __init__(self, *blocks: AttNetBlock) -> None:
        super().__init__(*blocks)
        self.grad_checkpointing = False

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        batch, height, width, _ = tokens.shape
        first = self[0]
        pool = pooling_matrix(height, width, first.token_mixer.kernel_size, first.token_mixer.pool,
                              tokens.device, torch.float32)
        if torch.is_grad_enabled() or tokens.device.type != "cpu" or torch.compiler.is_compiling() \
                or torch.onnx.is_in_onnx_export():  # a traced graph must not depend on the batch size
            return self._run_blocks(tokens, pool)
        # Every block is per-sample (no batch statistics), so splitting the batch changes nothing but locality.
        step = max(1, _CPU_INFERENCE_TILE // (height * width * first.channel_mixer.hidden))
        if step >= batch:
            return self._run_blocks(tokens, pool)
        return torch.cat([self._run_blocks(part, pool) for part in tokens.split(step)])

    def _run_blocks(self, tokens: torch.Tensor, pool: torch.Tensor) -> torch.Tensor:
        for block in self:
            if self.grad_checkpointing and torch.is_grad_enabled():
                tokens = checkpoint(block, tokens, pool, use_reentrant=False)
            else:
                tokens = block(tokens, pool)
        return tokens


def _conv_bn(in_chs: int, out_chs: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_chs, out_chs, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(out_chs))


class AttNet(nn.Module):
    """AttNet backbone and ImageNet classifier.

    Args:
        in_chans: Input channels (1 for single-channel infrared input).
        num_classes: Classifier outputs; 0 gives no classifier (``forward`` returns pooled, normed features).
        depths: Blocks per stage.
        dims: Channels per stage.
        exp_rates: GLU expansion rate per stage.
        kernel_size: ATConv kernel size.
        pool: ATConv pooling, "seq" (released) or "grid" (paper text).
        glu_dconv: Depthwise conv in the GLU gate branch.
        glu_norm: RMS norm before the GLU output projection.
        use_layer_scale: Per-channel layer scale (init 1e-6) on both residual branches.
        drop_rate: Dropout before the classifier.
        drop_path_rate: Stochastic depth, rising linearly from 0 over all blocks.
        global_pool: Only "avg" (mean over H and W before the head's LayerNorm).
    """

    def __init__(
            self,
            in_chans: int = 3,
            num_classes: int = 1000,
            depths: Sequence[int] = (2, 3, 12, 3),
            dims: Sequence[int] = (48, 96, 224, 384),
            exp_rates: Sequence[float] = (8, 8, 4, 4),
            kernel_size: int = 3,
            pool: PoolMode = "seq",
            glu_dconv: bool = True,
            glu_norm: bool = True,
            use_layer_scale: bool = True,
            drop_rate: float = 0.0,
            drop_path_rate: float = 0.0,
            global_pool: str = "avg",
    ) -> None:
        super().__init__()
        if global_pool != "avg":
            raise ValueError(f"AttNet supports global_pool='avg' only, got {global_pool!r}")
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.global_pool = global_pool
        self.drop_rate = drop_rate

        stem = nn.Sequential(_conv_bn(in_chans, dims[0] // 2), nn.GELU(), _conv_bn(dims[0] // 2, dims[0]))
        self.downsample_layers = nn.ModuleList([stem] + [_conv_bn(dims[i - 1], dims[i]) for i in range(1, 4)])

        rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        self.stages = nn.ModuleList()
        self.feature_info = []
        for i, depth in enumerate(depths):
            block_rates, rates = rates[:depth], rates[depth:]
            self.stages.append(AttNetStage(*[
                AttNetBlock(dims[i], exp_rates[i], kernel_size, pool, glu_dconv, glu_norm, use_layer_scale, rate)
                for rate in block_rates
            ]))
            self.feature_info.append(dict(num_chs=dims[i], reduction=4 * 2 ** i, module=f"stages.{i}"))

        self.num_features = self.head_hidden_size = dims[-1]
        self.norm = nn.LayerNorm(dims[-1], eps=1e-5)
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(dims[-1], num_classes) if num_classes > 0 else nn.Identity()
        named_apply(_init_weights, self)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        """ATConv's difference_control must not be decayed towards 0 (it sets the inhibition strength)."""
        return {name for name, _ in self.named_parameters() if name.endswith("difference_control")}

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        return dict(
            stem=r"^downsample_layers\.0",
            blocks=r"^(?:stages|downsample_layers)\.(\d+)" if coarse else [
                (r"^downsample_layers\.(\d+)", (0,)),
                (r"^stages\.(\d+)\.(\d+)", None),
                (r"^norm", (99999,)),
            ],
        )

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        for stage in self.stages:
            stage.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        if global_pool is not None and global_pool != "avg":
            raise ValueError(f"AttNet supports global_pool='avg' only, got {global_pool!r}")
        self.num_classes = num_classes
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        if num_classes > 0:
            _init_weights(self.head)

    def _run_stage(self, index: int, x: torch.Tensor) -> torch.Tensor:
        # Convolutions keep channels_last memory, so the NCHW <-> (B, H, W, C) permutes below are views.
        x = self.downsample_layers[index](x)
        return self.stages[index](x.permute(0, 2, 3, 1).contiguous()).permute(0, 3, 1, 2)

    def forward_intermediates(
            self,
            x: torch.Tensor,
            indices: int | list[int] | None = None,
            norm: bool = False,
            stop_early: bool = False,
            output_fmt: str = "NCHW",
            intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """Stage outputs (NCHW, strides 4, 8, 16, 32) for timm's feature extraction (features_only=True)."""
        if output_fmt != "NCHW":
            raise ValueError("AttNet intermediates are NCHW only")
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        x = x.contiguous(memory_format=torch.channels_last)
        intermediates = []
        last = max_index if stop_early or intermediates_only else len(self.stages) - 1
        for index in range(last + 1):
            x = self._run_stage(index, x)
            if index in take_indices:
                intermediates.append(x)
        return intermediates if intermediates_only else (x, intermediates)

    def prune_intermediate_layers(
            self,
            indices: int | list[int] = 1,
            prune_norm: bool = False,
            prune_head: bool = True,
    ) -> list[int]:
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        self.stages = self.stages[:max_index + 1]
        self.downsample_layers = self.downsample_layers[:max_index + 1]
        if prune_norm or max_index < 3:
            self.norm = nn.Identity()
        if prune_head:
            self.reset_classifier(0)
        return take_indices

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        """The stem (stride 4), what modality-specific stems replace; ``forward_features`` is
        ``forward_trunk(forward_stem(x))``."""
        return self.downsample_layers[0](x.contiguous(memory_format=torch.channels_last))

    def forward_trunk(self, x: torch.Tensor) -> torch.Tensor:
        """Everything after the stem, to the unpooled map of the last stage."""
        x = self.stages[0](x.permute(0, 2, 3, 1).contiguous()).permute(0, 3, 1, 2)
        for index in range(1, len(self.stages)):
            x = self._run_stage(index, x)
        return x

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Unpooled NCHW map of the last stage (stride 32); channels_last memory."""
        return self.forward_trunk(self.forward_stem(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.head_drop(self.norm(x.mean((2, 3))))
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _init_weights(module: nn.Module, name: str = "") -> None:
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


_RELEASED_LINEAR = re.compile(r"(token_mixer\.(kernel_proj|x_proj|proj)|channel_mixer\.fc2)\.weight$")
_RELEASED_FC1 = re.compile(r"^(.*channel_mixer)\.fc1\.(weight|bias)$")


def remap_released_keys(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Released layout -> ours: 1x1 conv weights become Linear weights, ``fc1`` splits into gate and value.

    Keys already in our layout pass through unchanged, so the mapping is idempotent.
    """
    out = {}
    for key, value in state_dict.items():
        fc1 = _RELEASED_FC1.match(key)
        if fc1:
            gate, val = value.chunk(2, dim=0)
            out[f"{fc1[1]}.fc1_gate.{fc1[2]}"] = gate.flatten(1) if gate.ndim > 1 else gate
            out[f"{fc1[1]}.fc1_value.{fc1[2]}"] = val.flatten(1) if val.ndim > 1 else val
        elif _RELEASED_LINEAR.search(key) and value.ndim == 4:
            out[key] = value.flatten(1)
        else:
            out[key] = value
    return out


def checkpoint_filter_fn(state_dict: Mapping[str, Any], model: AttNet) -> dict[str, torch.Tensor]:
    """Map a released AttNet checkpoint (or one of ours, possibly wrapped) to this implementation's layout.

    Raises ``CheckpointMismatchError`` listing missing, unexpected and wrongly shaped keys when the checkpoint
    is not an AttNet of this shape. The classifier and the first conv are left for timm to adapt (num_classes,
    in_chans).
    """
    out = remap_released_keys(state_dict_from(state_dict))
    check_state_dict(out, model.state_dict(), ignore_prefixes=("head.", "downsample_layers.0.0.0."))
    return out


def released_state_dict(model: AttNet) -> dict[str, torch.Tensor]:
    """The model's weights in the authors' released key layout (1x1 convs as 4-D weights, fused ``fc1``)."""
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    out = {}
    for key, value in state.items():
        if ".fc1_value." in key:
            continue
        if ".fc1_gate." in key:
            value_key = key.replace(".fc1_gate.", ".fc1_value.")
            fused = torch.cat([value, state[value_key]], dim=0)
            out[key.replace(".fc1_gate.", ".fc1.")] = fused[..., None, None] if fused.ndim == 2 else fused
        elif _RELEASED_LINEAR.search(key):
            out[key] = value[..., None, None]
        else:
            out[key] = value
    return out


def _create_attnet(variant: str, pretrained: bool = False, **kwargs: Any) -> AttNet:
    return build_model_with_cfg(
        AttNet, variant, pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(out_indices=(0, 1, 2, 3), feature_cls="getter"),
        **kwargs,
    )


def _cfg(**kwargs: Any) -> dict[str, Any]:
    return {
        "url": "", "num_classes": 1000, "input_size": (3, 224, 224), "pool_size": (7, 7),
        "crop_pct": 0.875, "interpolation": "bicubic", "mean": IMAGENET_DEFAULT_MEAN, "std": IMAGENET_DEFAULT_STD,
        "first_conv": "downsample_layers.0.0.0", "classifier": "head",
        "paper_ids": "arXiv:2510.20092",
        "paper_name": "Attentive Convolution: Unifying the Expressivity of Self-Attention with Convolutional "
                      "Efficiency",
        **kwargs,
    }


# The authors distribute their ImageNet-1K weights as files; pass one with
# pretrained_cfg_overlay=dict(file="AttNet_T2.pth") (nothing is downloaded).
default_cfgs = generate_default_cfgs({
    f"attnet_{size}.in1k": _cfg() for size in ("xxs", "xs", "s", "t1", "t2", "t3", "t4")
})

# name: (depths, dims, glu_dconv, glu_norm, use_layer_scale, drop_path_rate) from the paper's released variants
VARIANTS: dict[str, tuple[tuple[int, ...], tuple[int, ...], bool, bool, bool, float]] = {
    "attnet_xxs": ((2, 2, 4, 2), (32, 64, 128, 240), True, False, False, 0.02),
    "attnet_xs": ((2, 2, 7, 2), (40, 80, 160, 320), True, False, True, 0.02),
    "attnet_s": ((2, 3, 10, 3), (40, 80, 160, 320), True, False, False, 0.1),
    "attnet_t1": ((2, 3, 12, 3), (48, 96, 224, 384), True, True, True, 0.1),
    "attnet_t2": ((3, 3, 16, 3), (64, 128, 288, 512), True, True, True, 0.2),
    "attnet_t3": ((4, 4, 26, 4), (72, 144, 320, 576), True, True, True, 0.4),
    "attnet_t4": ((5, 5, 28, 5), (96, 192, 384, 768), True, True, True, 0.5),
}


def _variant(name: str, pretrained: bool, **kwargs: Any) -> AttNet:
    depths, dims, glu_dconv, glu_norm, use_layer_scale, drop_path_rate = VARIANTS[name]
    kwargs.setdefault("drop_path_rate", drop_path_rate)
    args = dict(depths=depths, dims=dims, glu_dconv=glu_dconv, glu_norm=glu_norm, use_layer_scale=use_layer_scale)
    return _create_attnet(name, pretrained, **dict(args, **kwargs))


@register_model
def attnet_xxs(pretrained: bool = False, **kwargs: Any) -> AttNet:
    return _variant("attnet_xxs", pretrained, **kwargs)


@register_model
def attnet_xs(pretrained: bool = False, **kwargs: Any) -> AttNet:
    return _variant("attnet_xs", pretrained, **kwargs)


@register_model
def attnet_s(pretrained: bool = False, **kwargs: Any) -> AttNet:
    return _variant("attnet_s", pretrained, **kwargs)


@register_model
def attnet_t1(pretrained: bool = False, **kwargs: Any) -> AttNet:
    return _variant("attnet_t1", pretrained, **kwargs)


@register_model
def attnet_t2(pretrained: bool = False, **kwargs: Any) -> AttNet:
    return _variant("attnet_t2", pretrained, **kwargs)


@register_model
def attnet_t3(pretrained: bool = False, **kwargs: Any) -> AttNet:
    return _variant("attnet_t3", pretrained, **kwargs)


@register_model
def attnet_t4(pretrained: bool = False, **kwargs: Any) -> AttNet:
    return _variant("attnet_t4", pretrained, **kwargs)

