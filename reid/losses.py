"""Re-ID losses, returned as a named dict and summed with config weights in one place (``weighted_sum``).

* ``id``: cross-entropy with label smoothing on the BNNeck logits.
* ``triplet_cross``: the metric loss (``reid.metric_losses``; by default the batch-hard triplet loss,
  pytorch-metric-learning's TripletMarginLoss + BatchHardMiner, on L2-normalised embeddings, so the 0.3 margin
  means the same for every backbone whatever its feature scale; raw features of AttNet's LayerNorm head start with
  losses of 13-18) mined across modalities: visible anchors against infrared positives and negatives, and the
  reverse (``ref_emb``), averaged over the two directions.
* ``triplet_batch``: the same loss mined within the whole batch.
* ``metric_loss: weighted`` is AGW's weighted regularised triplet (softmax weights over all positives and
  negatives, soft margin; Ye et al., TPAMI 2021); circle, contrastive and multi-similarity losses are entries of
  the registry too.

Which features the triplets compare is a choice (``triplet_features``). BoT and AGW use the pooled features before the
BNNeck. On a backbone whose head ends in a LayerNorm (AttNet, and most attention-style networks) those share a
large common component: normalised, every pair is about as close as every other and every triplet sits at the
margin; raw, the loss is lowered by shrinking all features towards a point. The trainer's default therefore
compares the features after the BNNeck, which the batch statistics keep centred and spread and which retrieval
ranks by (benchmarks/ablate_losses.py measures both; BENCHMARKS.md section 7).
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from reid.metric_losses import METRIC_LOSSES, LossSettings
from reid.models.reid_model import ReIDOutput

TripletFeatures = Literal["pooled", "bnneck"]


class WeightedRegularizedTriplet(nn.Module):
    """AGW's weighted regularised triplet: softmax-weighted positive and negative distances, soft margin, by
    default on L2-normalised embeddings like the batch-hard loss.

    Called like a pytorch-metric-learning loss: anchors ``embeddings`` with ``labels`` against ``ref_emb`` with
    ``ref_labels`` (the anchors themselves when no reference is given).

    Args:
        normalize: Distances between L2-normalised embeddings (AGW itself uses the raw pooled features).
    """

    def __init__(self, normalize: bool = True) -> None:
        super().__init__()
        self.normalize = normalize

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor, ref_emb: torch.Tensor | None = None,
                ref_labels: torch.Tensor | None = None) -> torch.Tensor:
        ref_emb = embeddings if ref_emb is None else ref_emb
        ref_labels = labels if ref_labels is None else ref_labels
        embeddings, ref_emb = embeddings.float(), ref_emb.float()
        if self.normalize:
            embeddings, ref_emb = F.normalize(embeddings, dim=1), F.normalize(ref_emb, dim=1)
        distance = torch.cdist(embeddings, ref_emb)
        positive = (labels.unsqueeze(1) == ref_labels.unsqueeze(0)).float()
        negative = 1.0 - positive

        def softmax_weights(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            shifted = values * mask - (values * mask).amax(1, keepdim=True)
            exp = torch.exp(shifted) * mask
            return exp / (exp.sum(1, keepdim=True) + 1e-6)

        furthest_positive = (distance * positive * softmax_weights(distance, positive)).sum(1)
        closest_negative = (distance * negative * softmax_weights(-distance, negative)).sum(1)
        valid = (positive.sum(1) > 0) & (negative.sum(1) > 0)
        if not valid.any():
            return distance.sum() * 0.0
        return F.soft_margin_loss(closest_negative[valid] - furthest_positive[valid],
                                  torch.ones_like(closest_negative[valid]))


class ReIDLoss(nn.Module):
    """Computes the named losses of one batch: the identity loss, and the metric loss (``reid.metric_losses``)
    mined across modalities and within the whole batch.

    Args:
        label_smoothing: Of the identity cross-entropy.
        margin: The metric loss's margin (margin-based losses).
        metric_loss: A name in ``METRIC_LOSSES`` ("batch_hard", "weighted", "circle", ...).
        normalize: Metric distances between L2-normalised features (else raw Euclidean distances).
        features: What the metric loss compares: "bnneck" (the embeddings after the BNNeck, which retrieval
            ranks by) or "pooled" (the backbone's pooled output before it, as BoT and AGW do).
    """

    def __init__(self, label_smoothing: float = 0.1, margin: float = 0.3, metric_loss: str = "batch_hard",
                 normalize: bool = True, features: TripletFeatures = "bnneck") -> None:
        super().__init__()
        if features not in ("pooled", "bnneck"):
            raise ValueError(f"features must be 'pooled' or 'bnneck', got {features!r}")
        if metric_loss not in METRIC_LOSSES:
            raise ValueError(f"metric_loss must be one of {', '.join(METRIC_LOSSES)}, got {metric_loss!r}")
        self.features = features
        self.identity = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        self.metric = METRIC_LOSSES[metric_loss].build(LossSettings(margin, normalize))

    def _metric(self, anchors: torch.Tensor, labels: torch.Tensor, ref: torch.Tensor | None = None,
                ref_labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.metric(anchors.float(), labels, ref_emb=None if ref is None else ref.float(),
                           ref_labels=ref_labels)

    def forward(self, output: ReIDOutput, labels: torch.Tensor, is_infrared: torch.Tensor) -> dict[str, torch.Tensor]:
        named = {"id": self.identity(output.logits.float(), labels)}
        visible = ~is_infrared
        features = output.pooled if self.features == "pooled" else output.embeddings
        if visible.any() and is_infrared.any():
            named["triplet_cross"] = 0.5 * (
                self._metric(features[visible], labels[visible], features[is_infrared], labels[is_infrared])
                + self._metric(features[is_infrared], labels[is_infrared], features[visible], labels[visible]))
        named["triplet_batch"] = self._metric(features, labels)
        return named


def weighted_sum(named: dict[str, torch.Tensor], weights: dict[str, float]) -> torch.Tensor:
    """The training objective: sum of weight * loss over the named losses (a missing weight counts as 1)."""
    return sum(weights.get(name, 1.0) * value for name, value in named.items())
