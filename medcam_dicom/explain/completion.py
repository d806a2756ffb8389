"""Completion: a sufficient mask grown until removing it takes the decision's evidence away.

The pruning and the evidence search return the *smallest* mask that is as convincing as the full image
(sufficiency). A classifier that reads its finding redundantly still decides from what such a mask leaves
behind: blurred away, a fifth of a finding leaves the other four fifths (measured on the plain-trained
benchmark classifiers, docs/benchmark.md). Completion asks the second question of the mask - is all the
evidence in it? - and grows it, along a ranking of the voxels outside it, to the smallest of a few sizes
(``COMPLETE_GROWTH`` times its voxel count, one batched pass each way, then a few finer sizes below the
one chosen) whose removal leaves the target's probability at most a bound, while the grown mask still
passes the pruning's test. The ranking blends a
map of where the evidence lies (the warm start's occlusion map per image, the decoder's logits amortised)
with the classifier's gradient at the image *with the mask removed*: the voxels the decision still
stands on once the mask is gone. A mask no growth completes is returned as it is.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from medcam_dicom.explain.config import PRUNE_CRITERIA
from medcam_dicom.explain.pruning import blended_scores, chunked_log_odds, gradient_scores, ranked_levels

#: the sizes, as multiples of the mask's voxel count, a mask is grown to (capped at the image)
COMPLETE_GROWTH = (1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0)


def removal_scores(
    classifier: nn.Module, image: torch.Tensor, baseline: torch.Tensor, mask: torch.Tensor, target: int,
    guide: torch.Tensor | None, gradient_weight: float,
) -> torch.Tensor:
    """What completion grows ``mask`` along: the smoothed gradient of the target's log-odds at ``image``
    with ``mask`` removed (:func:`~medcam_dicom.explain.pruning.gradient_scores` of the complement: how
    much each voxel left standing supports the decision), blended by percentile with ``guide`` (weight
    ``1 - gradient_weight``; :func:`~medcam_dicom.explain.pruning.blended_scores` over the voxels outside
    the mask). Without a guide, or with ``gradient_weight`` 1, the gradient alone; with 0, the guide alone."""
    if not 0.0 <= gradient_weight <= 1.0:
        raise ValueError(f"gradient_weight must lie in [0, 1], got {gradient_weight}")
    outside = ~mask.bool().cpu()
    if guide is not None and gradient_weight == 0.0:
        return guide.detach().float().cpu()
    gradient = gradient_scores(classifier, image, baseline, outside, target).float().cpu()
    if guide is None or gradient_weight == 1.0:
        return gradient
    return blended_scores(guide.detach().float().cpu(), gradient, outside, gradient_weight)


def complete_evidence(
    classifier: nn.Module, image: torch.Tensor, baseline: torch.Tensor, mask: torch.Tensor, target: int,
    full_log_odds: float, criterion: str, removed_probability: float, scores: torch.Tensor,
    growth: Sequence[float] = COMPLETE_GROWTH, refine: int = 4,
) -> torch.Tensor:
    """``mask`` grown along ``scores`` (its own voxels first, then the rest by score;
    :func:`~medcam_dicom.explain.pruning.ranked_levels`) to the smallest of ``growth`` times its voxel
    count whose removal - ``image`` ``(C, *spatial)`` with the grown mask replaced by ``baseline`` - leaves
    the target's probability at most ``removed_probability``, while the grown mask, kept alone, still
    passes ``criterion``'s test (the pruning's: the decision, and for ``"preserved"``/``"sufficient"``
    target log-odds at least the lower of ``full_log_odds`` and ``mask``'s own). ``mask`` itself (boolean,
    on the CPU) when its removal already does, when no growth does, or for ``"none"``. The size is then
    found to ``refine`` evenly spaced voxel counts between the chosen growth and the one below it.
    Two batched classifier passes of ``len(growth) + 1`` masks, and two of ``refine`` masks."""
    if criterion not in PRUNE_CRITERIA:
        raise ValueError(f"unknown prune criterion {criterion!r}; expected any of {PRUNE_CRITERIA}")
    if not 0.0 < removed_probability < 1.0:
        raise ValueError(f"removed_probability must lie in (0, 1), got {removed_probability}")
    mask = mask.bool().cpu()
    count = int(mask.sum())
    if criterion == "none" or count == 0:
        return mask
    scores = scores.cpu()
    counts = [count] + sorted({min(mask.numel(), max(count + 1, round(factor * count))) for factor in growth})
    candidates = ranked_levels(mask, scores, counts)
    complete, passing, bar = _tested(classifier, image, baseline, candidates, target, removed_probability,
                                     criterion, full_log_odds)
    if bool(complete[0]) or not bool((complete & passing).any()):
        return mask
    chosen = int(torch.where(complete & passing)[0][0])
    finer = sorted({round(counts[chosen - 1] + (counts[chosen] - counts[chosen - 1]) * (j + 1) / (refine + 1))
                    for j in range(max(0, refine))} - {counts[chosen - 1], counts[chosen]})
    if finer:
        levels = ranked_levels(mask, scores, finer)
        complete, passing, _ = _tested(classifier, image, baseline, levels, target, removed_probability,
                                       criterion, full_log_odds, bar)
        if bool((complete & passing).any()):
            return levels[int(torch.where(complete & passing)[0][0])]
    return candidates[chosen]


def _tested(
    classifier: nn.Module, image: torch.Tensor, baseline: torch.Tensor, candidates: torch.Tensor, target: int,
    removed_probability: float, criterion: str, full_log_odds: float, bar: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Per candidate: whether its removal leaves the target's probability at most ``removed_probability``,
    and whether it passes ``criterion``'s test with log-odds at least ``bar`` (default: the lower of
    ``full_log_odds`` and the first candidate's, the mask completion starts from); and that bar."""
    _, removed_odds = chunked_log_odds(classifier, image, ~candidates, target, baseline)
    kept, odds = chunked_log_odds(classifier, image, candidates, target, baseline)
    if bar is None:
        bar = min(full_log_odds, float(odds[0]))
    passing = kept if criterion == "decision" else kept & (odds >= bar)
    return torch.sigmoid(removed_odds) <= removed_probability, passing, bar
