"""The re-ID model: any timm backbone, optional modality-specific stems, pooling, BNNeck and identity classifier."""
from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from reid.models.backbones import BackboneError, create_backbone
from reid.models.non_local import NonLocal

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
    uses it, a fixed one (then a buffer, not a parameter).

    The learnable form clamps the map at ``eps`` before the power, as Radenovic et al.'s code does; the fixed one
    is AGW's own, ``(mean(x ** p) + 1e-12) ** (1 / p)`` (its model.py), on the map clamped at zero (a ResNet's map
    is, after its ReLU), so a channel that is zero everywhere pools to 1e-4, as in AGW."""

    def __init__(self, p: float = 3.0, eps: float = 1e-6, trainable: bool = True) -> None:
        super().__init__()
        if trainable:
            self.p = nn.Parameter(torch.tensor(float(p)))
        else:
            self.register_buffer("p", torch.tensor(float(p)))
        self.eps, self.trainable = eps, trainable

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.trainable:
            return x.clamp(min=self.eps).pow(self.p).mean((2, 3)).pow(1.0 / self.p)
        return (x.clamp(min=0).pow(self.p).mean((2, 3)) + 1e-12).pow(1.0 / self.p)


def splits_at_the_stem(backbone: nn.Module) -> bool:
    """Whether ``forward_features`` of a backbone is a stem, then a trunk, that ``ReIDModel`` can run apart (for two
    stems into one trunk): a backbone that names them (AttNet's ``forward_stem`` and ``forward_trunk``), or the
    ResNet family's conv1, bn1, act1 and max pool, then layer1-4."""
    if hasattr(backbone, "forward_stem") and hasattr(backbone, "forward_trunk"):
        return True
    return all(hasattr(backbone, part) for part in ("conv1", "bn1", "act1", "maxpool", "layer1", "layer4"))


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
        non_local: Non-local blocks after the last blocks of each ResNet stage, one count per stage (AGW's "agw"
            method: [0, 2, 3, 0], after blocks 2, 3 of layer2 and 3, 4, 5 of layer3); ResNet family only.
        non_local_channels: A non-local block's inner width: "one" (AGW's model.py) or "half" its channels (the
            non-local paper) (``NonLocal``).

    With modality stems, a batch of both modalities runs each stem on its own modality's images and the shared
    layers once over all of them, in the batch's order (AGW's joint pass: the shared BatchNorms normalise over both
    modalities together and update their running statistics once a step).
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
            non_local: Sequence[int] = (),
            non_local_channels: Literal["one", "half"] = "one",
    ) -> None:
        super().__init__()
        extra = {} if drop_path_rate is None else {"drop_path_rate": drop_path_rate}
        created = create_backbone(backbone, input_size, pretrained, num_classes=0, last_stride=last_stride, **extra)
        self.backbone_name, self.input_size, self.size_note = backbone, created.input_size, created.note
        self.backbone = created.model
        self.infrared_backbone = None
        self.non_local = self._non_local_blocks(non_local, non_local_channels) if any(non_local) else None
        if modality_stems:
            if not splits_at_the_stem(self.backbone):
                raise BackboneError(f"modality_stems: {backbone} does not split into a stem and a trunk here (the "
                                    f"ResNet family and AttNet do)")
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

    def _non_local_blocks(self, counts: Sequence[int], channels: str) -> nn.ModuleDict:
        """Non-local blocks after the last ``counts[i]`` blocks of ResNet stage i + 1, keyed "layer<stage>_<block>"."""
        stages = [getattr(self.backbone, f"layer{i}", None) for i in range(1, 5)]
        if len(counts) != 4 or any(not isinstance(stage, nn.Sequential) for stage in stages):
            raise BackboneError(f"non_local: {self.backbone_name} has no ResNet stages (layer1-4) to put non-local "
                                f"blocks in; give one count per stage, e.g. [0, 2, 3, 0]")
        blocks = nn.ModuleDict()
        for number, (count, stage) in enumerate(zip(counts, stages, strict=True), 1):
            if count > len(stage):
                raise BackboneError(f"non_local: layer{number} has {len(stage)} blocks, not {count}")
            width = _out_channels(stage[-1])
            for block in range(len(stage) - count, len(stage)):
                blocks[f"layer{number}_{block}"] = NonLocal(width, width // 2 if channels == "half" else 1)
        return blocks

    @staticmethod
    def _stem(backbone: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if hasattr(backbone, "forward_stem"):
            return backbone.forward_stem(x)
        return backbone.maxpool(backbone.act1(backbone.bn1(backbone.conv1(x))))

    def _trunk(self, x: torch.Tensor) -> torch.Tensor:
        """Everything after the stem: a backbone's own trunk, or layer1-4 of a ResNet with the non-local blocks
        after the blocks they follow."""
        if hasattr(self.backbone, "forward_trunk"):
            return self.backbone.forward_trunk(x)
        for number in range(1, 5):
            for block, module in enumerate(getattr(self.backbone, f"layer{number}")):
                x = module(x)
                if self.non_local is not None and f"layer{number}_{block}" in self.non_local:
                    x = self.non_local[f"layer{number}_{block}"](x)
        return x

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        names = {"gem.p"} if self.gem is not None and isinstance(self.gem.p, nn.Parameter) else set()
        if hasattr(self.backbone, "no_weight_decay"):
            names |= {f"backbone.{n}" for n in self.backbone.no_weight_decay()}
        return names

    def _features(self, images: torch.Tensor, is_infrared: torch.Tensor | None) -> torch.Tensor:
        """The unpooled map: each stem on its own modality's images, the shared trunk once over the batch."""
        if self.infrared_backbone is None and self.non_local is None:
            return self.backbone.forward_features(images)
        if self.infrared_backbone is None or is_infrared is None or not is_infrared.any():
            stems = self._stem(self.backbone, images)
        elif is_infrared.all():  # one modality: no masked copies (and, compiled, no shapes that vary)
            stems = self._stem(self.infrared_backbone, images)
        else:
            visible = self._stem(self.backbone, images[~is_infrared])
            stems = visible.new_empty((len(images), *visible.shape[1:]))
            stems[~is_infrared] = visible
            stems[is_infrared] = self._stem(self.infrared_backbone, images[is_infrared]).to(visible.dtype)
        return self._trunk(stems)

    def _pool(self, maps: torch.Tensor) -> torch.Tensor:
        if self.gem is None:
            return self.backbone.forward_head(maps, pre_logits=True)
        if getattr(self.backbone, "output_fmt", "NCHW") == "NHWC":
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
        pooled = self._pool(self._features(images, is_infrared))
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


def _out_channels(block: nn.Module) -> int:
    """The channels a ResNet block puts out: those of its last convolution's BatchNorm."""
    norms = [module for module in block.modules() if isinstance(module, nn.BatchNorm2d)]
    return norms[-1].num_features
