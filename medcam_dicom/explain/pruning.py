"""Pruning: the smallest part of an optimised mask that is still as convincing as the whole.

The per-image optimisation stops when the hard mask is stable and faithful, not when it is minimal: the
total-variation and activation terms keep a fringe of voxels around the evidence that the decision does
not need (measured on the plain-trained benchmark classifiers: a quarter to a half of the mask lies off
the finding). Pruning ranks the mask's own voxels by the explainer's soft mask (its confidence that a
voxel is evidence), classifies the masks keeping the top 5 %, 10 %, ... of them in one batch, and keeps
the smallest one that passes: as convincing as the full image (else as the whole mask). A mask that falls
short of the full image may instead grow along the soft mask (levels above 100 % of it). Every kept mask
is a level set of the soft mask, so it stays as compact as the optimised one; the soft mask itself is
returned unchanged. The levels go through the classifier as one batch (as the warm start's do).
Optionally the ranking is the classifier's own gradient at the optimised mask (:func:`gradient_scores`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.transforms import GaussianSmooth
from torch import nn

from medcam_dicom.explain.config import PRUNE_CRITERIA, PRUNE_SHRINK_FRACTIONS
from medcam_dicom.explain.losses import target_log_odds
from medcam_dicom.explain.verification import apply_mask, evaluation_mode, forward_logits


def gradient_scores(
    classifier: nn.Module, image: torch.Tensor, baseline: torch.Tensor, mask: torch.Tensor, target: int
) -> torch.Tensor:
    """How much each voxel of the hard-masked image ``image`` ``(C, *spatial)`` (``mask`` kept, the rest
    ``baseline``) supports ``target``: the gradient of the target's log-odds with respect to the mask,
    ``sum_c grad_x * (image - baseline)`` (one backward pass; nothing reaches the classifier's parameters),
    smoothed with a Gaussian of 1/32 of the smallest side so that a level set is a region, not speckle."""
    keep = mask.to(device=image.device, dtype=image.dtype).unsqueeze(0).requires_grad_(True)
    with evaluation_mode(classifier), torch.enable_grad():
        logits = forward_logits(classifier, (keep * image + (1.0 - keep) * baseline).unsqueeze(0))
        odds = target_log_odds(logits, torch.tensor([target], device=logits.device)).sum()
        (gradient,) = torch.autograd.grad(odds, keep)
    sigma = max(1.0, min(image.shape[1:]) / 32)
    return torch.as_tensor(GaussianSmooth(sigma=sigma)(gradient.detach()), dtype=image.dtype)[0]


def level_masks(mask: torch.Tensor, scores: torch.Tensor, fractions: Sequence[float]) -> torch.Tensor:
    """Boolean masks ``(L, *spatial)``, one per fraction of ``mask``'s voxel count: up to 1, the top
    ``fraction`` of ``mask``'s voxels by ``scores``; above 1, all of ``mask`` plus the best-scoring voxels
    outside it (the mask grown along the score). At least one voxel; exact counts, ties broken by position."""
    inside = mask.bool().flatten()
    count = int(inside.sum())
    flat = scores.detach().flatten().float()
    # every voxel of the mask ranks above every voxel outside it; within each, by score
    parts = [part.nonzero().squeeze(1) for part in (inside, ~inside)]
    order = torch.cat([idx[flat[idx].argsort(descending=True, stable=True)] for idx in parts])
    levels = torch.zeros((len(fractions), inside.numel()), dtype=torch.bool)
    for row, fraction in enumerate(fractions):
        levels[row, order[: max(1, min(inside.numel(), round(fraction * count)))]] = True
    return levels.view(len(fractions), *mask.shape)


def prune_mask(
    classifier: nn.Module,
    image: torch.Tensor,
    baseline: torch.Tensor,
    mask: torch.Tensor,
    scores: torch.Tensor,
    target: int,
    full_log_odds: float,
    criterion: str = "preserved",
    fractions: Sequence[float] = PRUNE_SHRINK_FRACTIONS,
) -> torch.Tensor:
    """The smallest level of ``mask`` (see :func:`level_masks`, ranked by ``scores``, e.g. the soft mask)
    that passes ``criterion`` on ``image`` ``(C, *spatial)`` hard-masked onto ``baseline``; ``mask``
    itself when it is empty, the criterion is ``"none"`` or no other level does better. One batched
    classifier pass of ``len(fractions) + 1`` images.

    ``"decision"``: the smallest level keeping the decision. ``"preserved"``: the smallest level keeping
    the decision with target log-odds at least the full image's; when no level reaches that, the smallest
    level up to the whole mask that keeps the decision and is at least as convincing as the whole mask.
    Fractions above 1 let a mask that falls short of the full image grow until it does not.
    """
    if criterion not in PRUNE_CRITERIA:
        raise ValueError(f"unknown prune criterion {criterion!r}; expected any of {PRUNE_CRITERIA}")
    mask = mask.bool().cpu()
    if criterion == "none" or not bool(mask.any()):
        return mask
    levels = sorted(set(float(f) for f in fractions) | {1.0})
    whole = levels.index(1.0)
    candidates = level_masks(mask, scores.cpu(), levels)  # level 1.0 is the mask itself
    with evaluation_mode(classifier), torch.no_grad():
        logits = forward_logits(classifier, apply_mask(image, candidates.to(image.device), baseline)).float()
    odds = target_log_odds(logits, torch.full((len(levels),), target, device=logits.device)).cpu()
    kept = (logits.argmax(dim=1) == target).cpu()
    if criterion == "decision":
        passing = kept
    else:
        passing = kept & (odds >= full_log_odds)
        if not bool(passing.any()):
            passing = kept & (odds >= odds[whole])
            passing[whole + 1 :] = False
    chosen = int(passing.nonzero()[0]) if bool(passing.any()) else whole
    return candidates[chosen]
