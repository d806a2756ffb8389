"""Pruning: the smallest part of an optimised mask that is still as convincing as the whole.

The per-image optimisation stops when the hard mask is stable and faithful, not when it is minimal: the
total-variation and activation terms keep a fringe of voxels around the evidence that the decision does
not need (measured on the plain-trained benchmark classifiers: a quarter to a half of the mask lies off
the finding). Pruning ranks the mask's own voxels by the explainer's soft mask (its confidence that a
voxel is evidence), classifies the masks keeping the top 5 %, 10 %, ... of them in one batch, and keeps
the smallest one that passes: as convincing as the full image (else as the whole mask). A mask that falls
short of the full image may instead grow along the ranking (levels above 100 % of it). Every kept mask
is a level set of the ranking within the optimised mask; the soft mask itself is returned unchanged.
The levels go through the classifier as one batch (as the warm start's do); a second batch of finer levels
between the chosen one and the next smaller one tried finds the level to a few per cent (``refine``).
Per image the soft mask's order is blended with the warm start's saliency map (``"start"``: the optimised
soft mask is nearly binary, so its order within the mask says little). Optionally the ranking is the
classifier's own gradient at the optimised mask (:func:`gradient_scores`), or a blend of it with the soft
mask (:func:`blended_scores`); such a ranking is taken again at the pruned mask and the
pruning repeated while it shrinks (:func:`prune_reranked`).
Last, whole connected parts of the kept mask that the decision does not need are left out
(:func:`drop_unneeded_parts`): a level set can hold a speck or a distractor apart from the evidence whose
voxels rank as high as the evidence's own.
The ``"sufficient"`` criterion goes further for a mask none of whose levels is as convincing as the full
image: it keeps growing along the ranking over the image (a second batch) until one is; the whole image,
the full image itself, always is.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy import ndimage
from torch import nn

from medcam_dicom.explain.baselines import gaussian_blur
from medcam_dicom.explain.config import PRUNE_CRITERIA, PRUNE_RANKINGS, PRUNE_SHRINK_FRACTIONS
from medcam_dicom.explain.losses import target_log_odds
from medcam_dicom.explain.verification import evaluation_mode, forward_logits, masked_log_odds


def mask_gradient(
    classifier: nn.Module, image: torch.Tensor, baseline: torch.Tensor, mask: torch.Tensor, target: int
) -> torch.Tensor:
    """How much each voxel of the hard-masked image ``image`` ``(C, *spatial)`` (``mask`` kept, the rest
    ``baseline``) supports ``target``: the gradient of the target's log-odds with respect to the mask,
    ``sum_c grad_x * (image - baseline)``, of the mask's spatial shape on the image's device (one backward
    pass; nothing reaches the classifier's parameters)."""
    keep = mask.to(device=image.device, dtype=image.dtype).unsqueeze(0).requires_grad_(True)
    with evaluation_mode(classifier), torch.enable_grad():
        logits = forward_logits(classifier, (keep * image + (1.0 - keep) * baseline).unsqueeze(0))
        odds = target_log_odds(logits, torch.tensor([target], device=logits.device)).sum()
        (gradient,) = torch.autograd.grad(odds, keep)
    return gradient.detach()[0]


def gradient_scores(
    classifier: nn.Module, image: torch.Tensor, baseline: torch.Tensor, mask: torch.Tensor, target: int
) -> torch.Tensor:
    """:func:`mask_gradient` smoothed with a Gaussian of 1/32 of the smallest side, so that a level set is
    a region, not speckle."""
    gradient = mask_gradient(classifier, image, baseline, mask, target).unsqueeze(0)
    sigma = max(1.0, min(image.shape[1:]) / 32)
    return gaussian_blur(gradient, sigma)[0]


def ranking_scores(
    ranking: str, own: torch.Tensor, classifier: nn.Module, image: torch.Tensor, baseline: torch.Tensor,
    mask: torch.Tensor, target: int, gradient_weight: float, start: torch.Tensor | None = None,
    start_weight: float = 0.5,
) -> torch.Tensor:
    """The scores the pruning ranks ``mask``'s voxels by (:attr:`MedCAMConfig.prune_ranking`): ``"soft"``
    = ``own`` (the explainer's soft mask or decoder logits), ``"gradient"`` = :func:`gradient_scores` at
    ``mask``, ``"blend"`` = both by :func:`blended_scores` with ``gradient_weight`` on the gradient,
    ``"start"`` = ``own`` and the warm start's saliency map ``start`` by :func:`blended_scores` with
    ``start_weight`` on the map (``own`` alone when there is no map)."""
    resolved = tuple(name for name in PRUNE_RANKINGS if name != "auto")  # "auto" is the config's to resolve
    if ranking not in resolved:
        raise ValueError(f"unknown prune ranking {ranking!r}; expected any of {resolved}")
    if ranking == "soft" or (ranking == "start" and start is None):
        return own
    if ranking == "start":
        return blended_scores(own, start, mask, start_weight).to(own)
    gradient = gradient_scores(classifier, image, baseline, mask, target)
    return gradient if ranking == "gradient" else blended_scores(own, gradient, mask, gradient_weight)


def prune_reranked(
    classifier: nn.Module, image: torch.Tensor, baseline: torch.Tensor, mask: torch.Tensor, own: torch.Tensor,
    target: int, full_log_odds: float, criterion: str, ranking: str, gradient_weight: float = 0.25,
    rounds: int = 0, fractions: Sequence[float] = PRUNE_SHRINK_FRACTIONS, image_fractions: Sequence[float] = (),
    refine: int = 0, start: torch.Tensor | None = None, start_weight: float = 0.5,
) -> torch.Tensor:
    """:func:`prune_mask` along :func:`ranking_scores` at ``mask`` (``own``: the explainer's soft mask or
    logits); then, for a ranking that depends on the mask it is taken at (``"gradient"``, ``"blend"``), up
    to ``rounds`` more times along the ranking recomputed at the mask just pruned, while that shrinks it:
    the classifier's gradient at the small mask says which of *its* voxels the decision rests on, where the
    gradient at the whole mask spoke for voxels the first pruning dropped. Each round costs one backward
    pass and the pruning's batches; ``"soft"`` and ``"start"`` (``start``: the warm start's saliency map,
    weighted ``start_weight``) do not change with the mask and prune once."""
    scores = ranking_scores(ranking, own, classifier, image, baseline, mask, target, gradient_weight, start,
                            start_weight)
    pruned = prune_mask(classifier, image, baseline, mask, scores, target, full_log_odds, criterion, fractions,
                        image_fractions, refine)
    for _ in range(rounds if ranking in ("gradient", "blend") else 0):
        scores = ranking_scores(ranking, own, classifier, image, baseline, pruned.to(image.device), target,
                                gradient_weight)
        again = prune_mask(classifier, image, baseline, pruned, scores, target, full_log_odds, criterion,
                           fractions, image_fractions, refine)
        if int(again.sum()) >= int(pruned.sum()):
            break
        pruned = again
    return pruned


def blended_scores(
    first: torch.Tensor, second: torch.Tensor, mask: torch.Tensor, second_weight: float
) -> torch.Tensor:
    """``(1 - second_weight)`` times each voxel's percentile in ``first`` plus ``second_weight`` times
    its percentile in ``second``, the percentiles taken among ``mask``'s voxels for a voxel of the mask
    and among the rest for the others (so that each score's order *within the mask*, where the pruning
    chooses, is what is blended - not a whole-image scale on which the mask's voxels all lie at the
    top). Tied values share their mean percentile."""
    inside = mask.bool().flatten().cpu()
    firsts, seconds = first.detach().flatten().float().cpu(), second.detach().flatten().float().cpu()
    blended = torch.zeros(inside.numel())
    for part in (inside, ~inside):
        index = part.nonzero().squeeze(1)
        if index.numel():
            blended[index] = ((1.0 - second_weight) * _percentiles(firsts[index])
                              + second_weight * _percentiles(seconds[index]))
    return blended.view(mask.shape)


def _percentiles(values: torch.Tensor) -> torch.Tensor:
    """Each value's rank among ``values`` scaled to [0, 1] (0 when there is one), ties at their mean rank."""
    _, inverse, counts = torch.unique(values, return_inverse=True, return_counts=True)
    first_rank = torch.cumsum(counts, 0) - counts  # the rank of each distinct value's first occurrence
    mean_rank = first_rank.float() + (counts.float() - 1.0) / 2.0
    return mean_rank[inverse] / max(1, values.numel() - 1)


def level_masks(mask: torch.Tensor, scores: torch.Tensor, fractions: Sequence[float]) -> torch.Tensor:
    """Boolean masks ``(L, *spatial)``, one per fraction of ``mask``'s voxel count: up to 1, the top
    ``fraction`` of ``mask``'s voxels by ``scores``; above 1, all of ``mask`` plus the best-scoring voxels
    outside it (the mask grown along the score). At least one voxel; exact counts, ties broken by position."""
    count = int(mask.bool().sum())
    return ranked_levels(mask, scores, [max(1, round(fraction * count)) for fraction in fractions])


def ranked_levels(mask: torch.Tensor, scores: torch.Tensor, counts: Sequence[int]) -> torch.Tensor:
    """Boolean masks ``(L, *spatial)`` of exactly ``counts[i]`` voxels each (capped at the image): the
    voxels of ``mask`` first, then those outside it, each part ordered by ``scores`` (ties by position).
    A count up to ``mask``'s is the top of the mask; above it, the mask grown along the score."""
    inside = mask.bool().flatten()
    flat = scores.detach().flatten().float()
    # every voxel of the mask ranks above every voxel outside it; within each, by score
    parts = [part.nonzero().squeeze(1) for part in (inside, ~inside)]
    order = torch.cat([idx[flat[idx].argsort(descending=True, stable=True)] for idx in parts])
    levels = torch.zeros((len(counts), inside.numel()), dtype=torch.bool)
    for row, count in enumerate(counts):
        levels[row, order[: max(0, min(inside.numel(), int(count)))]] = True
    return levels.view(len(counts), *mask.shape)


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
    image_fractions: Sequence[float] = (),
    refine: int = 0,
) -> torch.Tensor:
    """The smallest level of ``mask`` (see :func:`level_masks`, ranked by ``scores``, e.g. the soft mask)
    that passes ``criterion`` on ``image`` ``(C, *spatial)`` hard-masked onto ``baseline``; ``mask``
    itself when the criterion is ``"none"`` or no other level does better. One batched classifier pass
    of ``len(fractions) + 1`` images (another for ``refine``, and one when the image-wide growth runs).

    ``"decision"``: the smallest level keeping the decision. ``"preserved"``: the smallest level keeping
    the decision with target log-odds at least the full image's; when no level reaches that, the smallest
    level up to the whole mask that keeps the decision and is at least as convincing as the whole mask.
    Fractions above 1 let a mask that falls short of the full image grow until it does not.
    ``"sufficient"``: as ``"preserved"``, but when no level of ``fractions`` reaches the full image's
    log-odds, the mask - an empty one too - keeps growing along ``scores`` to ``image_fractions`` of the
    image (a second batch) until it does; with 1.0 among them the whole image, which is the full image
    itself, ends the search, so the result is always as convincing as the full image.
    ``refine``: that many voxel counts between the chosen level and the next smaller one tried (evenly
    spaced in ratio) go through the classifier as one more batch, and the smallest passing the same test
    is kept: the level is then found to a few per cent instead of the fractions' steps (0.05 to 0.1 is a
    factor 2).
    """
    if criterion not in PRUNE_CRITERIA:
        raise ValueError(f"unknown prune criterion {criterion!r}; expected any of {PRUNE_CRITERIA}")
    mask, scores = mask.bool().cpu(), scores.cpu()
    count = int(mask.sum())
    grows = criterion == "sufficient" and bool(image_fractions)
    if criterion == "none" or (count == 0 and not grows):
        return mask
    counts = sorted({max(1, round(float(f) * count)) for f in fractions} | {count}) if count else [0]
    whole = counts.index(count)
    candidates = ranked_levels(mask, scores, counts)  # candidates[whole] is the mask itself
    kept, odds = masked_log_odds(classifier, image, candidates, target, baseline)
    bar = None if criterion == "decision" else full_log_odds  # the log-odds a level must reach
    passing = kept if bar is None else kept & (odds >= bar)
    if not bool(passing.any()) and bar is not None:
        if grows:
            grown = _grown_level(classifier, image, baseline, mask, scores, target, full_log_odds,
                                 image_fractions, above=counts[-1], refine=refine)
            if grown is not None:
                return grown
        bar = float(odds[whole])
        passing = kept & (odds >= bar)
        passing[whole + 1 :] = False
    if not bool(passing.any()):
        return candidates[whole]
    chosen = int(passing.nonzero()[0])
    finer = _finer_level(classifier, image, baseline, mask, scores, target, bar,
                         counts[chosen - 1] if chosen else 0, counts[chosen], refine)
    return candidates[chosen] if finer is None else finer


def _finer_level(
    classifier: nn.Module, image: torch.Tensor, baseline: torch.Tensor, mask: torch.Tensor,
    scores: torch.Tensor, target: int, bar: float | None, below: int, chosen: int, refine: int,
) -> torch.Tensor | None:
    """The smallest of ``refine`` levels of ``mask`` along ``scores`` with voxel counts between ``below``
    (a level that failed, or 0) and ``chosen`` (one that passed), evenly spaced in ratio, that keeps the
    decision (and reaches log-odds ``bar`` unless it is ``None``); ``None`` if none does (one batch)."""
    if refine <= 0:
        return None
    low = max(below, 1)
    steps = {round(low * (chosen / low) ** (k / (refine + 1))) for k in range(refine + 2)}
    counts = sorted(c for c in steps if below < c < chosen)
    if not counts:
        return None
    candidates = ranked_levels(mask, scores, counts)
    kept, odds = masked_log_odds(classifier, image, candidates, target, baseline)
    passing = kept if bar is None else kept & (odds >= bar)
    return candidates[int(passing.nonzero()[0])] if bool(passing.any()) else None


def _grown_level(
    classifier: nn.Module, image: torch.Tensor, baseline: torch.Tensor, mask: torch.Tensor,
    scores: torch.Tensor, target: int, full_log_odds: float, image_fractions: Sequence[float], above: int,
    refine: int = 0,
) -> torch.Tensor | None:
    """The smallest of ``mask`` grown along ``scores`` to ``image_fractions`` of the image (those larger
    than ``above`` voxels) that keeps the decision at the full image's log-odds, found to ``refine`` finer
    counts below it (see :func:`_finer_level`); ``None`` if none does."""
    counts = sorted({min(mask.numel(), round(float(a) * mask.numel())) for a in image_fractions} - {0})
    counts = [c for c in counts if c > above]
    if not counts:
        return None
    candidates = ranked_levels(mask, scores, counts)
    kept, odds = masked_log_odds(classifier, image, candidates, target, baseline)
    # the level covering the whole image is the full image itself: batched and single passes differ in the
    # 7th digit, so its log-odds are not compared with the full image's
    passing = kept & ((odds >= full_log_odds) | (torch.tensor(counts) == mask.numel()))
    if not bool(passing.any()):
        return None
    chosen = int(passing.nonzero()[0])
    below = counts[chosen - 1] if chosen else above
    finer = _finer_level(classifier, image, baseline, mask, scores, target, full_log_odds, below,
                         counts[chosen], refine)
    return candidates[chosen] if finer is None else finer


def drop_unneeded_parts(
    classifier: nn.Module, image: torch.Tensor, baseline: torch.Tensor, mask: torch.Tensor, target: int,
    full_log_odds: float, criterion: str = "preserved", max_parts: int = 64,
) -> torch.Tensor:
    """``mask`` without those of its connected parts (voxels touching at a face, edge or corner) that
    ``image`` hard-masked onto ``baseline`` passes ``criterion`` without: each of up to ``max_parts``
    parts, the smallest first, is left out on its own (one pass); those the test passes without are
    then left out together, the one whose absence costs least first (a second pass, one mask per count),
    and the mask with the most of them left out that still passes is returned. The test is the
    pruning's: ``"decision"`` keeps the decision; the others also keep target log-odds at least the lower
    of the full image's (``full_log_odds``) and the whole mask's, so a mask that was as convincing as the
    full image stays so. At least one part always stays; ``"none"``, a mask of one part or nothing to
    leave out returns ``mask`` as it is (boolean, on the CPU)."""
    if criterion not in PRUNE_CRITERIA:
        raise ValueError(f"unknown prune criterion {criterion!r}; expected any of {PRUNE_CRITERIA}")
    mask = mask.bool().cpu()
    if criterion == "none" or max_parts <= 0:
        return mask
    labelled, count = ndimage.label(mask.numpy(), structure=np.ones((3,) * mask.ndim, dtype=bool))
    if count < 2:
        return mask
    labels = torch.from_numpy(labelled)
    sizes = torch.bincount(labels.flatten(), minlength=count + 1)[1:]
    parts = sizes.argsort(stable=True)[: min(max_parts, count - 1)] + 1  # the largest part is never tried
    bar = None
    if criterion != "decision":
        _, whole = masked_log_odds(classifier, image, mask.unsqueeze(0), target, baseline)
        bar = min(full_log_odds, float(whole[0]))
    alone = torch.stack([mask & (labels != part) for part in parts.tolist()])
    kept, odds = chunked_log_odds(classifier, image, alone, target, baseline)
    passing = kept if bar is None else kept & (odds >= bar)
    if not bool(passing.any()):
        return mask
    removable = parts[passing][odds[passing].argsort(descending=True, stable=True)]
    together = torch.stack([mask & ~torch.isin(labels, removable[: j + 1]) for j in range(len(removable))])
    kept, odds = chunked_log_odds(classifier, image, together, target, baseline)
    passing = kept if bar is None else kept & (odds >= bar)
    return together[int(passing.nonzero()[-1])] if bool(passing.any()) else mask


def chunked_log_odds(
    classifier: nn.Module, image: torch.Tensor, masks: torch.Tensor, target: int, baseline: torch.Tensor,
    chunk: int = 16,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`~medcam_dicom.explain.verification.masked_log_odds` of ``masks`` in batches of at most
    ``chunk`` (volumes stay within memory)."""
    results = [masked_log_odds(classifier, image, masks[start : start + chunk], target, baseline)
               for start in range(0, len(masks), chunk)]
    return torch.cat([kept for kept, _ in results]), torch.cat([odds for _, odds in results])
