"""The re-ID model: any timm backbone, optional modality-specific stems, pooling, BNNeck and identity classifier."""
from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from reid.models.backbones import create_backbone

Pooling = Literal["avg", "gem"]


class ReIDOutput(NamedTuple):
    """What the model returns, in training and evaluation alike.

    Attributes:
        pooled: The backbone's pooled output, before the BNNeck.
        embeddings: The BNNeck's output: what retrieval ranks by (and the classifier's input). Without a BNNeck
            (a model without classifier), the pooled output itself.
        logits: Identity logits, or None for a model without classifier.
    """

    pooled: torch.Tensor
    embeddings: torch.Tensor
    logits: torch.Tensor | None


class GeM(nn.Module):
    """Generalised mean pooling over H and W (Radenovic et al., TPAMI 2018), with a learnable exponent or, as AGW
    uses it, a fixed one (then a buffer, not a parameter)."""

    def __init__(self, p: float = 3.0, eps: float = 1e-6, trainable: bool = True) -> None:
        super().__init__()
        if trainable:
            self.p = nn.Parameter(torch.tensor(float(p)))
        else:
            self.register_buffer("p", torch.tensor(float(p)))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(min=self.eps).pow(self.p).mean((2, 3)).pow(1.0 / self.p)


def _stem_pattern(backbone: nn.Module) -> re.Pattern:
    matcher = backbone.group_matcher() if hasattr(backbone, "group_matcher") else {}
    stem = matcher.get("stem")
    if not stem:
        raise ValueError(f"{type(backbone).__name__} does not name its stem (timm group_matcher); "
                         "modality-specific stems need it")
    return re.compile(stem if isinstance(stem, str) else "|".join(p[0] if isinstance(p, tuple) else p for p in stem))


def _share_all_but_stem(copy_: nn.Module, original: nn.Module, stem: re.Pattern, prefix: str = "") -> None:
    """Make ``copy_`` use ``original``'s modules and parameters everywhere outside the stem."""
    for name, child in list(copy_.named_children()):
        full = f"{prefix}{name}"
        names = [f"{full}.{n}" for n, _ in child.named_parameters()] + [f"{full}.{n}" for n, _ in child.named_buffers()]
        if not any(stem.match(n) for n in names):
            setattr(copy_, name, getattr(original, name))
        else:
            _share_all_but_stem(child, getattr(original, name), stem, f"{full}.")
    for name, _ in list(copy_.named_parameters(recurse=False)):
        if not stem.match(f"{prefix}{name}"):
            setattr(copy_, name, getattr(original, name))


class ReIDModel(nn.Module):
    """Backbone -> pooling -> BNNeck -> classifier, the strong baseline of re-ID (Luo et al., CVPR-W 2019).

    Args:
        backbone: Any timm model name (AttNet by default).
        num_classes: Training identities; 0 gives a feature extractor without BNNeck or classifier (the backbone's
            own pooled output, for baselines).
        input_size: (height, width) the backbone is built for.
        pretrained: Local ImageNet weight file for the backbone.
        pooling: "avg" (the backbone's own head pooling, e.g. AttNet's mean + LayerNorm) or "gem".
        modality_stems: Separate copies of the backbone's stem for visible and infrared input, shared after it
            (the two-stream VI-ReID baselines); which modules form the stem comes from timm's group_matcher (for
            ResNet: conv1, bn1 and the max pool, where AGW splits its two streams).
        drop_path_rate: Stochastic depth of the backbone (None: the architecture's default).
        last_stride: The last stage's stride (ResNet family; None: the architecture's). AGW and BoT use 1.
        gem_trainable: GeM's exponent is learnt (else fixed at 3, as AGW has it).
        bnneck_init_std: The BNNeck's BN weight starts at N(1, std) (AGW: 0.01); 0 starts it at 1.
    """

    def __init__(
            self,
            backbone: str = "attnet_t1",
            num_classes: int = 0,
            input_size: tuple[int, int] = (288, 144),
            pretrained: str | Path | None = None,
            pooling: Pooling = "avg",
            modality_stems: bool = False,
            drop_path_rate: float | None = None,
            last_stride: int | None = None,
            gem_trainable: bool = True,
            bnneck_init_std: float = 0.0,
    ) -> None:
        super().__init__()
        extra = {} if drop_path_rate is None else {"drop_path_rate": drop_path_rate}
        created = create_backbone(backbone, input_size, pretrained, num_classes=0, last_stride=last_stride, **extra)
        self.backbone_name, self.input_size, self.size_note = backbone, created.input_size, created.note
        self.backbone = created.model
        self.infrared_backbone = None
        if modality_stems:
            stem = _stem_pattern(self.backbone)
            self.infrared_backbone = copy.deepcopy(self.backbone)
            _share_all_but_stem(self.infrared_backbone, self.backbone, stem)
        self.pooling = pooling
        self.gem = GeM(trainable=gem_trainable) if pooling == "gem" else None
        self.num_features = self.backbone.num_features
        self.num_classes = num_classes
        if num_classes > 0:
            self.bottleneck = nn.BatchNorm1d(self.num_features)
            self.bottleneck.bias.requires_grad_(False)  # BNNeck: no shift before the classifier
            if bnneck_init_std:
                nn.init.normal_(self.bottleneck.weight, 1.0, bnneck_init_std)
            self.classifier = nn.Linear(self.num_features, num_classes, bias=False)
            nn.init.normal_(self.classifier.weight, std=0.001)
        else:
            self.bottleneck, self.classifier = nn.Identity(), None

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        names = {"gem.p"} if self.gem is not None and isinstance(self.gem.p, nn.Parameter) else set()
        if hasattr(self.backbone, "no_weight_decay"):
            names |= {f"backbone.{n}" for n in self.backbone.no_weight_decay()}
        return names

    def _pool(self, backbone: nn.Module, images: torch.Tensor) -> torch.Tensor:
        maps = backbone.forward_features(images)
        if self.gem is None:
            return backbone.forward_head(maps, pre_logits=True)
        if getattr(backbone, "output_fmt", "NCHW") == "NHWC":
            maps = maps.permute(0, 3, 1, 2)
        elif maps.ndim == 3:  # (B, tokens, C)
            maps = maps.transpose(1, 2).unsqueeze(-1)
        return self.gem(maps)

    def pool(self, images: torch.Tensor, is_infrared: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C) pooled backbone output of images (B, 3, H, W), or of tracklets (B, T, 3, H, W) averaged over
        time."""
        frames = images.shape[1] if images.ndim == 5 else None
        if frames is not None:
            images = images.flatten(0, 1)
            is_infrared = None if is_infrared is None else is_infrared.repeat_interleave(frames)
        if self.infrared_backbone is None or is_infrared is None or not is_infrared.any():
            pooled = self._pool(self.backbone, images)
        elif is_infrared.all():  # one modality: no masked copies (and, compiled, no shapes that vary)
            pooled = self._pool(self.infrared_backbone, images)
        else:
            pooled = images.new_empty(len(images), self.num_features)
            visible = ~is_infrared
            if visible.any():
                pooled[visible] = self._pool(self.backbone, images[visible]).to(pooled.dtype)
            if is_infrared.any():
                pooled[is_infrared] = self._pool(self.infrared_backbone, images[is_infrared]).to(pooled.dtype)
        if frames is not None:
            pooled = pooled.view(-1, frames, pooled.shape[-1]).mean(1)
        return pooled

    def forward(self, images: torch.Tensor, is_infrared: torch.Tensor | None = None) -> ReIDOutput:
        pooled = self.pool(images, is_infrared)
        embeddings = self.bottleneck(pooled)
        logits = self.classifier(embeddings) if self.classifier is not None else None
        return ReIDOutput(pooled, embeddings, logits)

    @torch.no_grad()
    def embed(self, images: torch.Tensor, is_infrared: torch.Tensor | None = None) -> torch.Tensor:
        """L2-normalised retrieval embeddings."""
        return F.normalize(self.forward(images, is_infrared).embeddings.float(), dim=1)
