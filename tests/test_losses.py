"""Each loss term and the straight-through mask, on values worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from medcam_dicom.explain import losses
from medcam_dicom.explain.mask_network import mask_probabilities, straight_through_mask


def test_area_loss_is_mean_of_soft_mask():
    p = torch.tensor([[[[0.0, 1.0], [0.5, 0.5]]]])
    assert losses.area_loss(p).item() == 0.5


def test_binarisation_loss_is_zero_for_binary_masks_and_largest_at_one_half():
    assert losses.binarisation_loss(torch.tensor([0.0, 1.0, 1.0])).item() == 0.0
    assert math.isclose(losses.binarisation_loss(torch.full((4,), 0.5)).item(), 0.25)


def test_total_variation_counts_edges_along_every_spatial_axis():
    p = torch.zeros(1, 1, 4, 4)
    assert losses.total_variation_loss(p).item() == 0.0
    p[..., :, 2:] = 1.0  # one vertical edge: 4 of the 12 horizontal neighbour pairs differ
    assert math.isclose(losses.total_variation_loss(p).item(), 4 / 12, rel_tol=1e-6)
    volume = torch.zeros(1, 1, 2, 2, 2)
    volume[..., 1, :, :] = 1.0  # an edge along depth only
    assert math.isclose(losses.total_variation_loss(volume).item(), 1.0)


def test_kl_is_zero_for_equal_outputs_and_scaled_by_temperature_squared():
    a = torch.tensor([[2.0, -1.0, 0.5]])
    b = torch.tensor([[0.0, 1.0, 0.5]])
    assert losses.kl_loss(a, a, 2.0).item() < 1e-7
    t = 3.0
    p = torch.softmax(a / t, 1)
    q = torch.softmax(b / t, 1)
    expected = (p * (p.log() - q.log())).sum().item() * t**2
    assert math.isclose(losses.kl_loss(a, b, t).item(), expected, rel_tol=1e-5)


def test_ce_is_negative_log_probability_of_target():
    logits = torch.tensor([[1.0, 3.0]])
    expected = -torch.log_softmax(logits, 1)[0, 1].item()
    assert math.isclose(losses.ce_loss(logits, torch.tensor([1])).item(), expected, rel_tol=1e-6)


def test_target_log_odds_is_log_of_p_over_one_minus_p_without_saturating():
    logits = torch.tensor([[0.0, 12.0, 1.0], [2.0, 0.0, 0.0]])
    target = torch.tensor([1, 0])
    p = torch.softmax(logits.double(), 1)[torch.arange(2), target]
    expected = torch.log(p / (1 - p))
    assert torch.allclose(losses.target_log_odds(logits, target).double(), expected, atol=1e-5)
    # probabilities 0.99998 and 0.99997 differ by 1e-5, their log-odds by 0.4
    near = losses.target_log_odds(torch.tensor([[0.0, 10.8], [0.0, 10.4]]), torch.tensor([1, 1]))
    assert float(near[0] - near[1]) == pytest.approx(0.4, abs=1e-4)


def test_margin_loss_is_zero_once_the_evidence_beats_the_full_image_by_the_margin():
    full = torch.tensor([[0.0, 5.0]])
    target = torch.tensor([1])
    assert losses.margin_loss(full, torch.tensor([[0.0, 5.2]]), target, margin=0.1).item() == 0.0
    short = torch.tensor([[0.0, 4.0]], requires_grad=True)
    value = losses.margin_loss(full, short, target, margin=0.1)
    assert value.item() == pytest.approx(1.1)
    value.backward()
    assert short.grad[0, 1] < 0 < short.grad[0, 0], "the gradient raises the target's logit"


def test_robustness_loss_averages_cross_entropy_over_backgrounds():
    logits = torch.tensor([[1.0, 3.0], [2.0, 0.0], [0.0, 0.0]])
    expected = -torch.log_softmax(logits, 1)[:, 1].mean().item()
    assert math.isclose(losses.robustness_loss(logits, torch.tensor([1])).item(), expected, rel_tol=1e-6)


def test_cosine_distance_zero_for_same_direction_one_for_orthogonal():
    a = torch.tensor([[[[1.0]], [[0.0]]]])  # (B=1, C=2, 1, 1)
    b = torch.tensor([[[[0.0]], [[2.0]]]])
    assert losses.cosine_feature_distance(a, 3 * a).item() < 1e-6
    assert math.isclose(losses.cosine_feature_distance(a, b).item(), 1.0, rel_tol=1e-6)
    tokens = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # (B=1, N=2, D=2): distance along the last axis
    assert losses.cosine_feature_distance(tokens, tokens).item() < 1e-6


def test_standardised_distance_uses_the_full_image_statistics():
    full = torch.randn(1, 3, 5, 5, generator=torch.Generator().manual_seed(0))
    assert losses.standardised_feature_distance(full, full).item() == 0.0
    # a shift by one channel-std costs exactly 1 per element
    shifted = full + full.std(dim=(2, 3), keepdim=True)
    assert math.isclose(losses.standardised_feature_distance(full, shifted).item(), 1.0, rel_tol=1e-3)


def test_activation_matching_weights_layers_and_switches_distance_at_deep_from():
    generator = torch.Generator().manual_seed(0)
    full = [torch.randn(1, 4, 6, 6, generator=generator), torch.randn(1, 4, 3, 3, generator=generator)]
    masked = [f + 0.5 * torch.randn(f.shape, generator=generator) for f in full]
    total = losses.activation_matching_loss(full, masked, [1.0, 3.0], deep_from=1)
    expected = losses.cosine_feature_distance(full[0], masked[0]) + 3.0 * losses.standardised_feature_distance(
        full[1], masked[1]
    )
    assert math.isclose(total.item(), expected.item(), rel_tol=1e-6)


def test_channel_weights_let_a_channel_the_decision_does_not_use_go_unmatched():
    generator = torch.Generator().manual_seed(0)
    full = [torch.randn(1, 3, 6, 6, generator=generator), torch.randn(1, 3, 3, 3, generator=generator),
            torch.randn(1, 5, 3, generator=generator)]  # two spatial layers (cosine, standardised), tokens
    masked = [f.clone() for f in full]  # only channel 2 of every layer differs:
    masked[0][:, 2] += 1.0
    masked[1][:, 2] *= -1.0
    masked[2][..., 2] += 1.0  # tokens: the channel axis is the last
    unweighted = losses.activation_matching_loss(full, masked, [1.0, 1.0, 1.0], deep_from=1)
    ignore_two = [torch.tensor([1.5, 1.5, 0.0])] * 3
    assert unweighted.item() > 0.1
    assert losses.activation_matching_loss(full, masked, [1.0] * 3, 1, ignore_two).item() < 1e-6
    # weights of one leave the term as it was
    same = losses.activation_matching_loss(full, masked, [1.0] * 3, 1, [torch.ones(3)] * 3)
    assert math.isclose(same.item(), unweighted.item(), rel_tol=1e-5)


def test_decision_channel_weights_find_the_channel_the_logit_reads():
    features = torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]], [[5.0, 6.0]]]], requires_grad=True)  # (1, 3, 1, 2)
    # the log-odds read channel 0 (+), ignore channel 1, and count channel 2 against the target
    log_odds = 2.0 * features[:, 0].mean() - 1.0 * features[:, 2].mean()
    weights = losses.decision_channel_weights([features], log_odds)
    assert torch.allclose(weights[0], torch.tensor([3.0, 0.0, 0.0]))  # positive part, mean 1
    tokens = torch.ones(1, 4, 2, requires_grad=True)  # (1, N, C): the channel axis is the last
    (token_weights,) = losses.decision_channel_weights([tokens], tokens[..., 1].sum())
    assert torch.allclose(token_weights, torch.tensor([0.0, 2.0]))
    # nothing supports the decision (or the layer is not on the way to it): every channel counts
    unused = torch.ones(1, 2, 2, 2, requires_grad=True)
    (fallback,) = losses.decision_channel_weights([unused], -unused[:, 0].sum())
    assert torch.equal(fallback, torch.ones(2))


def test_straight_through_mask_is_binary_forward_and_identity_backward():
    p = torch.tensor([0.2, 0.5, 0.7, 0.99], requires_grad=True)
    m = straight_through_mask(p, 0.5)
    assert m.tolist() == [0.0, 0.0, 1.0, 1.0]
    (m * torch.tensor([1.0, 2.0, 3.0, 4.0])).sum().backward()
    assert p.grad.tolist() == [1.0, 2.0, 3.0, 4.0]


def test_mask_probabilities_stay_inside_bounds_with_nonzero_gradient():
    z = torch.tensor([-1e4, 0.0, 1e4], requires_grad=True)
    p = mask_probabilities(z, bound=6.0)
    assert p[0] > 0.0 and p[2] < 1.0 and math.isclose(p[1].item(), 0.5)
    p.sum().backward()
    assert torch.all(z.grad[1:2] > 0)
