"""The metric losses a run can train with (the config's ``metric_loss``): one record each, torch-free.

A record names the loss, says in one line what it does, and builds it (pytorch-metric-learning's losses and
miners, imported when built, so configs validate without torch). A built loss is called as pytorch-metric-learning
calls its losses, by keyword: ``loss(embeddings, labels, ref_emb=..., ref_labels=...)`` with anchors ``embeddings``
compared with the references (the anchors themselves when none are given). ``reid.losses.ReIDLoss`` mines the
cross-modality and the whole-batch terms with it.

Adding one: a record in ``METRIC_LOSSES``. The config's choices, its reference table, ``--set metric_loss=...`` and
the tests that go over every loss read the registry. Losses with weights of their own (ArcFace, CosFace: a
classifier in disguise) are not metric losses here; the identity loss is the classifier.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class LossSettings:
    """What the config says of the metric loss.

    Attributes:
        margin: The margin of margin-based losses (the batch-hard triplet's).
        normalize: Distances between L2-normalised embeddings (else raw Euclidean distances).
    """

    margin: float = 0.3
    normalize: bool = True


@dataclass(frozen=True)
class MetricLoss:
    """A metric loss: its name (the config's ``metric_loss``), what it does, and how it is built."""

    name: str
    summary: str
    build: Callable[[LossSettings], Callable[..., Any]]


def _batch_hard(settings: LossSettings):
    from pytorch_metric_learning import distances, losses, miners

    distance = distances.LpDistance(normalize_embeddings=settings.normalize)
    return _Mined(losses.TripletMarginLoss(margin=settings.margin, distance=distance),
                  miners.BatchHardMiner(distance=distance))


def _weighted(settings: LossSettings):
    from reid.losses import WeightedRegularizedTriplet

    return WeightedRegularizedTriplet(normalize=settings.normalize)


def _circle(settings: LossSettings):
    from pytorch_metric_learning import losses

    return losses.CircleLoss(m=0.25, gamma=128)  # fast-reid's re-ID setting of Sun et al.'s loss


def _contrastive(settings: LossSettings):
    from pytorch_metric_learning import distances, losses

    return losses.ContrastiveLoss(pos_margin=0.0, neg_margin=1.0,
                                  distance=distances.LpDistance(normalize_embeddings=settings.normalize))


def _multi_similarity(settings: LossSettings):
    from pytorch_metric_learning import losses, miners

    return _Mined(losses.MultiSimilarityLoss(alpha=2, beta=50, base=0.5), miners.MultiSimilarityMiner(epsilon=0.1))


class _Mined:
    """A pytorch-metric-learning loss over the pairs or triplets its miner picks, called like the loss itself."""

    def __init__(self, loss, miner) -> None:
        self.loss, self.miner = loss, miner

    def __call__(self, embeddings, labels, ref_emb=None, ref_labels=None):
        mined = self.miner(embeddings, labels, ref_emb=ref_emb, ref_labels=ref_labels)
        return self.loss(embeddings, labels, indices_tuple=mined, ref_emb=ref_emb, ref_labels=ref_labels)


METRIC_LOSSES: dict[str, MetricLoss] = {loss.name: loss for loss in (
    MetricLoss("batch_hard", "batch-hard triplets (pytorch-metric-learning's triplet margin loss and batch-hard "
                             "miner)", _batch_hard),
    MetricLoss("weighted", "AGW's weighted regularisation triplet (softmax-weighted, soft margin)", _weighted),
    MetricLoss("circle", "circle loss (Sun et al., CVPR 2020; m 0.25, gamma 128 as fast-reid sets it)", _circle),
    MetricLoss("contrastive", "contrastive loss (positives together, negatives beyond distance 1)", _contrastive),
    MetricLoss("multi_similarity", "multi-similarity loss with its miner (Wang et al., CVPR 2019)", _multi_similarity),
)}
