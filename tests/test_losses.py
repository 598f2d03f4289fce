import pytest
import torch
import torch.nn.functional as F

from reid.losses import ReIDLoss, WeightedRegularizedTriplet, weighted_sum
from reid.metric_losses import METRIC_LOSSES
from reid.models.reid_model import ReIDOutput


def batch(features, labels, infrared, classes=3):
    logits = torch.randn(len(labels), classes, generator=torch.Generator().manual_seed(0))
    return ReIDOutput(features, features, logits), torch.tensor(labels), torch.tensor(infrared)


def test_named_losses_and_identity_with_label_smoothing():
    features = torch.randn(8, 4)
    output, labels, infrared = batch(features, [0, 0, 1, 1, 0, 0, 1, 1], [False] * 4 + [True] * 4)
    named = ReIDLoss()(output, labels, infrared)
    assert set(named) == {"id", "triplet_cross", "triplet_batch"}
    torch.testing.assert_close(named["id"], F.cross_entropy(output.logits, labels, label_smoothing=0.1))


def test_cross_modality_mining_sees_what_within_modality_mining_hides():
    # Each modality is well separated by identity on its own, but an infrared image of identity 0 sits on the
    # visible images of identity 1: only visible-infrared pairs violate the margin.
    visible = torch.tensor([[1.0, 0.0], [0.98, 0.2], [0.0, 1.0], [0.2, 0.98]])
    infrared = torch.tensor([[0.0, 1.0], [0.05, 1.0], [1.0, 0.0], [1.0, 0.05]])
    labels = [0, 0, 1, 1, 1, 1, 0, 0]
    output, labels, flags = batch(torch.cat([visible, infrared]), labels, [False] * 4 + [True] * 4)
    named = ReIDLoss()(output, labels, flags)
    assert named["triplet_cross"] < 0.05
    swapped = [0, 0, 1, 1, 0, 0, 1, 1]
    output, swapped_labels, flags = batch(torch.cat([visible, infrared]), swapped, [False] * 4 + [True] * 4)
    hard = ReIDLoss()(output, swapped_labels, flags)
    assert hard["triplet_cross"] > 1.0


def test_single_modality_batch_has_no_cross_term():
    output, labels, infrared = batch(torch.randn(4, 3), [0, 0, 1, 1], [False] * 4)
    assert "triplet_cross" not in ReIDLoss()(output, labels, infrared)


def test_weighted_regularized_triplet_prefers_separated_identities():
    wrt = WeightedRegularizedTriplet()
    labels = torch.tensor([0, 0, 1, 1])
    separated = wrt(torch.tensor([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [0.1, 1.0]]), labels)
    mixed = wrt(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.1], [0.1, 1.0]]), labels)
    assert separated < mixed
    named = ReIDLoss(metric_loss="weighted")(*batch(torch.randn(8, 4), [0, 0, 1, 1] * 2, [False] * 4 + [True] * 4))
    assert set(named) == {"id", "triplet_cross", "triplet_batch"} and all(torch.isfinite(v) for v in named.values())


def test_weighted_sum():
    named = {"id": torch.tensor(2.0), "triplet_cross": torch.tensor(3.0), "triplet_batch": torch.tensor(5.0)}
    assert weighted_sum(named, {"id": 1.0, "triplet_cross": 0.5, "triplet_batch": 0.0}).item() == 3.5


def test_triplet_distances_are_normalised_unless_asked_for_raw_features():
    features = torch.randn(8, 4, generator=torch.Generator().manual_seed(3))
    labels = torch.tensor([0, 0, 1, 1] * 2)
    for triplet in ("batch_hard", "weighted"):
        normalised, raw = ReIDLoss(metric_loss=triplet), ReIDLoss(metric_loss=triplet, normalize=False)
        one, three = (loss(*batch(scale * features, labels.tolist(), [False] * 4 + [True] * 4))["triplet_batch"]
                      for loss, scale in ((normalised, 1.0), (normalised, 3.0)))
        torch.testing.assert_close(one, three)  # the scale of the features does not matter
        one, three = (raw(*batch(scale * features, labels.tolist(), [False] * 4 + [True] * 4))["triplet_batch"]
                      for scale in (1.0, 3.0))
        assert not torch.allclose(one, three)


def test_triplets_compare_the_features_asked_for():
    pooled = torch.randn(8, 4, generator=torch.Generator().manual_seed(4))
    after = torch.randn(8, 4, generator=torch.Generator().manual_seed(5))
    labels, infrared = torch.tensor([0, 0, 1, 1] * 2), torch.tensor([False] * 4 + [True] * 4)
    output = ReIDOutput(pooled, after, torch.randn(8, 3))
    on_pooled = ReIDLoss(features="pooled")(output, labels, infrared)
    on_bnneck = ReIDLoss()(output, labels, infrared)  # the default
    same = ReIDLoss(features="pooled")(ReIDOutput(after, after, output.logits), labels, infrared)
    torch.testing.assert_close(on_bnneck["triplet_batch"], same["triplet_batch"])
    assert not torch.allclose(on_pooled["triplet_batch"], on_bnneck["triplet_batch"])
    torch.testing.assert_close(on_pooled["id"], on_bnneck["id"])


@pytest.mark.parametrize("name", METRIC_LOSSES)
def test_every_metric_loss_trains_with_both_terms_and_prefers_separated_identities(name):
    """Every registered metric loss is built from its record and called by keyword, across modalities and over
    the batch; identities apart cost less than identities mixed."""
    labels, infrared = [0, 0, 1, 1, 0, 0, 1, 1], [False] * 4 + [True] * 4
    apart = torch.tensor([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [0.1, 1.0]] * 2)
    mixed = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.1], [0.1, 1.0]] * 2)
    loss = ReIDLoss(metric_loss=name)
    separated, confused = loss(*batch(apart, labels, infrared)), loss(*batch(mixed, labels, infrared))
    assert set(separated) == {"id", "triplet_cross", "triplet_batch"}
    assert all(torch.isfinite(value) for value in (*separated.values(), *confused.values()))
    assert separated["triplet_batch"] < confused["triplet_batch"], name
    features = apart.clone().requires_grad_(True)
    loss(*batch(features, labels, infrared))["triplet_batch"].backward()
    assert features.grad is not None and torch.isfinite(features.grad).all()


def test_an_unknown_metric_loss_is_refused():
    with pytest.raises(ValueError, match="metric_loss must be one of batch_hard, weighted, circle"):
        ReIDLoss(metric_loss="arcface")
