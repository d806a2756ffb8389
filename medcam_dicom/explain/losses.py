"""The Med-CAM loss terms (the paper's seven plus a log-odds hinge and a deletion term), one small function each (all
differentiable, all on torch tensors).

Shapes: ``logits`` ``(B, K)``; soft masks ``p`` ``(B, 1, *spatial)``; features ``(B, C, *spatial)`` for
spatial layers or ``(B, N, D)`` for token layers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from medcam_dicom.explain.config import MedCAMConfig


def cosine_feature_distance(full: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
    """Mean per-location cosine distance ``1 - cos`` between feature vectors (channel axis for
    spatial maps ``(B, C, ...)``, last axis for tokens ``(B, N, D)``)."""
    dim = -1 if full.ndim == 3 else 1
    return (1.0 - F.cosine_similarity(full, masked, dim=dim, eps=1e-6)).mean()


def standardised_feature_distance(
    full: torch.Tensor, masked: torch.Tensor, scale: torch.Tensor | None = None
) -> torch.Tensor:
    """MSE between channel-standardised maps: each channel of ``full`` is centred and scaled by its
    own spatial mean and std, and the same statistics are applied to ``masked``. A channel that is
    (nearly) constant on the full image is scaled by a tenth of the mean channel std instead, so that
    a dead channel cannot blow the term up. ``scale`` (broadcast over the maps) multiplies both
    standardised maps: the square root of a channel weight."""
    reduce = tuple(range(2, full.ndim))
    mean = full.mean(dim=reduce, keepdim=True)
    std = full.std(dim=reduce, keepdim=True)
    std = std.clamp_min(0.1 * std.mean() + 1e-6)  # a tensor bound: no device sync in the step loop
    weight = 1.0 if scale is None else scale
    return F.mse_loss(weight * (masked - mean) / std, weight * (full - mean) / std)


def activation_matching_loss(
    full_features: list[torch.Tensor],
    masked_features: list[torch.Tensor],
    layer_weights: list[float],
    deep_from: int,
    channel_weights: list[torch.Tensor] | None = None,
) -> torch.Tensor:
    """``L_act = sum_l alpha_l d(phi_l(x), phi_l(e))``: cosine distance for the layers before index
    ``deep_from`` (and for all token layers), standardised MSE from ``deep_from`` on. ``channel_weights``
    (one ``(C,)`` tensor per layer, see :func:`decision_channel_weights`) weigh each channel's part of
    the distance: a channel of weight 0 need not be matched."""
    total = full_features[0].new_zeros(())
    for index, (full, masked, alpha) in enumerate(zip(full_features, masked_features, layer_weights)):
        scale = None
        if channel_weights is not None:
            shape = (1, 1, -1) if full.ndim == 3 else (1, -1, *[1] * (full.ndim - 2))
            scale = channel_weights[index].to(full).sqrt().view(shape)
        if full.ndim == 3 or index < deep_from:
            if scale is not None:
                full, masked = full * scale, masked * scale
            distance = cosine_feature_distance(full, masked)
        else:
            distance = standardised_feature_distance(full, masked, scale)
        total = total + alpha * distance
    return total


def decision_channel_weights(features: list[torch.Tensor], log_odds: torch.Tensor) -> list[torch.Tensor]:
    """Per layer, how much each channel of ``features`` (spatial maps ``(1, C, ...)`` or tokens
    ``(1, N, C)``, recorded in a forward pass that ``log_odds`` (a scalar) was computed from) supports
    the decision: the positive part of the gradient of the target's log-odds with respect to the
    channel's mean (Grad-CAM's channel weights), scaled to mean 1 over the layer's channels (all ones
    where no channel supports it). One backward pass; nothing reaches the classifier's parameters."""
    gradients = torch.autograd.grad(log_odds, features, allow_unused=True)
    weights = []
    for feature, gradient in zip(features, gradients):
        channels = feature.shape[-1] if feature.ndim == 3 else feature.shape[1]
        if gradient is None:
            weights.append(feature.new_ones(channels).detach())
            continue
        axes = (0, 1) if feature.ndim == 3 else (0, *range(2, feature.ndim))
        weight = gradient.detach().mean(dim=axes).clamp_min(0.0)
        mean = weight.mean()
        weights.append(weight / mean if float(mean) > 0 else torch.ones_like(weight))
    return weights


def kl_loss(full_logits: torch.Tensor, masked_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``KL(softmax(f(x)/T) || softmax(f(e)/T)) * T^2``: the full image's output is the target."""
    target = F.log_softmax(full_logits / temperature, dim=1)
    predicted = F.log_softmax(masked_logits / temperature, dim=1)
    return F.kl_div(predicted, target, reduction="batchmean", log_target=True) * temperature**2


def ce_loss(masked_logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``-log softmax(f(e))[y]``."""
    return F.cross_entropy(masked_logits, target)


def area_loss(soft_mask: torch.Tensor, gate: torch.Tensor | None = None) -> torch.Tensor:
    """``mean(p)``: the fraction of the image kept, softly; with ``gate`` ``(B,)`` each image's fraction
    is scaled by its gate before the batch mean."""
    if gate is None:
        return soft_mask.mean()
    return (soft_mask.flatten(1).mean(1) * gate.to(soft_mask.dtype)).mean()


def binarisation_loss(soft_mask: torch.Tensor) -> torch.Tensor:
    """``mean(p (1 - p))``: zero only for a binary mask."""
    return (soft_mask * (1.0 - soft_mask)).mean()


def total_variation_loss(soft_mask: torch.Tensor) -> torch.Tensor:
    """Anisotropic total variation: mean absolute difference of neighbours, summed over spatial axes."""
    total = soft_mask.new_zeros(())
    for axis in range(2, soft_mask.ndim):
        total = total + soft_mask.diff(dim=axis).abs().mean()
    return total


def robustness_loss(background_logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean ``-log softmax(f(m x + (1 - m) r))[y]`` over the random backgrounds ``r`` (one row each);
    ``target`` is one class for all rows or one per row."""
    return F.cross_entropy(background_logits, target.expand(background_logits.shape[0]))


def target_log_odds(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``logit_y - logsumexp_{k != y} logit_k`` per row: ``log(p_y / (1 - p_y))``, which does not saturate
    where the softmax probability does (0.99998 and 0.99997 are 10.8 and 10.4)."""
    target_logit = logits.gather(1, target.view(-1, 1)).squeeze(1)
    others = logits.scatter(1, target.view(-1, 1), float("-inf"))
    return target_logit - torch.logsumexp(others, dim=1)


def margin_loss(
    full_logits: torch.Tensor, masked_logits: torch.Tensor, target: torch.Tensor, margin: float
) -> torch.Tensor:
    """``relu(odds(x) + margin - odds(e))`` with ``odds`` = :func:`target_log_odds`: zero once the evidence
    alone is at least as convincing as the full image (by ``margin`` in log-odds). The cross-entropy
    term cannot ask for this on a saturated classifier, where its gradient vanishes."""
    wanted = target_log_odds(full_logits, target).detach() + margin
    return F.relu(wanted - target_log_odds(masked_logits, target)).mean()


def deletion_loss(removed_logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``-log(1 - softmax(f(r))[y])`` on the image ``r`` with the evidence removed: large while the rest
    of the image still supports the target, zero once it does not (``softplus`` of the target log-odds,
    which keeps its gradient where the probability saturates)."""
    return F.softplus(target_log_odds(removed_logits, target)).mean()


def medcam_loss(
    config: MedCAMConfig,
    *,
    full_logits: torch.Tensor,
    masked_logits: torch.Tensor,
    targets: torch.Tensor,
    full_features: list[torch.Tensor],
    masked_features: list[torch.Tensor],
    layer_weights: list[float],
    soft_mask: torch.Tensor,
    tv_mask: torch.Tensor,
    robustness_logits: torch.Tensor | None = None,
    removed_logits: torch.Tensor | None = None,
    channel_weights: list[torch.Tensor] | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The whole Med-CAM loss of a batch of ``B`` images (per-image Med-CAM: ``B = 1``; the amortised
    explainer: a training batch), so that both optimise the same objective.

    ``full_logits`` / ``masked_logits`` ``(B, K)`` on the full and the hard-masked images, ``targets``
    ``(B,)``, the matched layers' features of both, ``soft_mask`` ``p`` ``(B, 1, *spatial)`` and
    ``tv_mask`` (the mask whose total variation is penalised: ``p`` per image; the amortised explainer
    uses the straight-through binary mask, so that speckle costs even where ``p`` is smooth). Optional:
    the robustness rows (the target of the one image, or one row per image in ``targets``' order), the
    logits of the images with the evidence removed (needed when ``weights.deletion > 0``), and the matched
    layers' channel weights of the activation term (per-image Med-CAM with
    ``config.activation_channels == "decision"``, :func:`decision_channel_weights`). The area term is gated
    per image by ``config.area_gate`` where the masked image does not keep the target. Returns the weighted
    sum and the unweighted terms.
    """
    weights = config.weights
    terms: dict[str, torch.Tensor] = {}
    if weights.act > 0:
        terms["act"] = activation_matching_loss(full_features, masked_features, layer_weights, len(layer_weights) // 2,
                                                channel_weights)
    if weights.ce > 0:
        terms["ce"] = ce_loss(masked_logits, targets)
    if weights.kl > 0:
        terms["kl"] = kl_loss(full_logits, masked_logits, config.temperature)
    if weights.margin > 0:
        terms["margin"] = margin_loss(full_logits, masked_logits, targets, config.margin_log_odds)
    if weights.area > 0:
        kept = masked_logits.argmax(dim=1) == targets
        terms["area"] = area_loss(soft_mask, torch.where(kept, 1.0, config.area_gate))
    if weights.bin > 0:
        terms["bin"] = binarisation_loss(soft_mask)
    if weights.tv > 0:
        terms["tv"] = total_variation_loss(tv_mask)
    if weights.rob > 0 and robustness_logits is not None and robustness_logits.shape[0] > 0:
        terms["rob"] = robustness_loss(robustness_logits, targets)
    if weights.deletion > 0:
        if removed_logits is None:
            raise ValueError("weights.deletion > 0 needs the logits of the images with the evidence removed")
        terms["deletion"] = deletion_loss(removed_logits, targets)
    loss = sum((getattr(weights, name) * value for name, value in terms.items()), full_logits.new_zeros(()))
    return loss, terms
