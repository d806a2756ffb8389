"""The evidence search: after the pruning, trade voxels of the mask by the classifier's own gradient.

The pruning keeps level sets of one ranking (the soft mask blended with the warm start's map), so every
mask it can return is a prefix of that order; the smallest convincing mask is often not one of them. On
the plain-trained benchmark classifiers a mask no larger than the best ranking method's smallest
decision-keeping top-k mask, and as convincing as the full image, exists on most lesion decisions (found
by a search like this one), where the pruned masks had one on a fifth of them.

Each round of :func:`search_evidence` takes one backward pass at the hard mask
(:func:`~medcam_dicom.explain.pruning.mask_gradient`, unsmoothed: what adding or removing each voxel is
worth to the target's log-odds, to first order) and classifies one batch of candidates: the mask without
its ``m`` least useful voxels; the same with the ``m`` most useful voxels within ``reach`` voxels of the
mask swapped in (``m`` = 1, 2, 4, ... 32); and, while the mask still falls short of the test, the mask with
the ``m`` most useful voxels anywhere in the image added (``m`` = 1, 2, 4, ... 1,024: the evidence for a
"normal" decision is spread over the image). The smallest candidate that passes the test is taken (at
equal size the one with the higher log-odds, which leaves room for the next round's removals); while
none passes, the one with the highest log-odds among those no larger than the mask, or among all when
none of those gains. The search stops when no candidate improves on the mask, or after ``rounds`` rounds.

With a ``guide`` (per image, the warm start's occlusion map; amortised, the decoder's logits) the
voxels are ranked by the gradient plus ``guide_weight`` times the guide, each scaled to at most 1
(:func:`guided_scores`): many masks of nearly the same size pass the test, and the gradient alone prefers
voxels at the finding's edge and in its context to those on it, where a map of where the evidence lies
breaks the tie. The test and the choice between candidates stay the classifier's.

The test is the pruning's: ``"decision"`` keeps the decision; ``"preserved"`` and ``"sufficient"`` keep
it with the target's log-odds at least the full image's. A mask that passes the test keeps passing it,
and never grows. An empty mask (a decision the blurred image alone keeps) that passes is kept; one that
falls short is grown like any other.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy import ndimage
from torch import nn

from medcam_dicom.explain.comparison import rescale
from medcam_dicom.explain.config import PRUNE_CRITERIA
from medcam_dicom.explain.pruning import chunked_log_odds, mask_gradient

#: how many voxels a candidate drops or swaps
SEARCH_STEPS = (1, 2, 4, 8, 16, 32)
#: how many voxels a candidate adds to a mask that falls short (up to 1,024: a "normal" decision's evidence
#: is spread over the image, and the gradient's top 32 voxels are often worth less than nothing)
GROW_STEPS = tuple(2**i for i in range(11))


def guided_scores(gradient: torch.Tensor, guide: torch.Tensor | None, weight: float) -> torch.Tensor:
    """What the search ranks voxels by: ``gradient`` over its largest magnitude plus ``weight`` times
    ``guide`` scaled to [0, 1] (``gradient`` itself without a guide or with weight 0)."""
    if guide is None or weight == 0:
        return gradient
    scaled = rescale(guide.to(gradient).reshape(gradient.shape))
    return gradient / gradient.abs().max().clamp_min(1e-12) + weight * scaled


def _candidates(
    mask: torch.Tensor, gradient: torch.Tensor, reach: int | None, may_grow: bool, steps: Sequence[int],
    grow_steps: Sequence[int] = GROW_STEPS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The round's candidate masks ``(L, *spatial)`` and their voxel counts: ``mask`` without its ``m``
    least useful voxels and with them swapped for the ``m`` most useful within ``reach`` (``m`` in
    ``steps``); with ``may_grow``, also with the ``m`` most useful voxels anywhere added (``m`` in
    ``grow_steps``)."""
    flat, scores = mask.flatten(), gradient.flatten()
    inside, allowed = torch.where(flat)[0], ~flat
    if reach is not None:
        near = ndimage.binary_dilation(mask.numpy(), structure=np.ones((3,) * mask.ndim, dtype=bool),
                                       iterations=reach) if reach > 0 else mask.numpy()
        allowed &= torch.from_numpy(np.ascontiguousarray(near)).flatten()
    outside = torch.where(allowed)[0]
    least = inside[scores[inside].argsort(stable=True)]
    most = outside[scores[outside].argsort(descending=True, stable=True)]
    candidates, counts = [], []
    for m in steps:
        if m < len(inside):
            dropped = flat.clone()
            dropped[least[:m]] = False
            candidates.append(dropped)
            counts.append(len(inside) - m)
        if m <= min(len(inside), len(most)):
            swapped = flat.clone()
            swapped[least[:m]] = False
            swapped[most[:m]] = True
            candidates.append(swapped)
            counts.append(len(inside))
    if may_grow:
        anywhere = torch.where(~flat)[0]
        best = anywhere[scores[anywhere].argsort(descending=True, stable=True)]
        for m in grow_steps:
            if m <= len(best):
                grown = flat.clone()
                grown[best[:m]] = True
                candidates.append(grown)
                counts.append(len(inside) + m)
    if not candidates:
        return torch.zeros((0, *mask.shape), dtype=torch.bool), torch.zeros(0, dtype=torch.long)
    return torch.stack(candidates).view(-1, *mask.shape), torch.tensor(counts)


def search_evidence(
    classifier: nn.Module, image: torch.Tensor, baseline: torch.Tensor, mask: torch.Tensor, target: int,
    full_log_odds: float, criterion: str = "preserved", rounds: int = 40, reach: int | None = 2,
    steps: Sequence[int] = SEARCH_STEPS, grow_steps: Sequence[int] = GROW_STEPS,
    guide: torch.Tensor | None = None, guide_weight: float = 0.0,
) -> torch.Tensor:
    """The smallest mask the gradient-guided search finds from ``mask`` that passes ``criterion`` on
    ``image`` ``(C, *spatial)`` hard-masked onto ``baseline`` (see the module's text); ``mask`` itself
    (boolean, on the CPU) for ``"none"`` or ``rounds`` 0. ``reach``: how far from the mask, in voxels, a
    swapped-in voxel may lie (``None``: anywhere); voxels added to a mask that falls short may lie anywhere.
    ``guide``: a map of the mask's shape whose ``guide_weight`` enters the voxels' ranking
    (:func:`guided_scores`).
    Each round costs one backward pass and one batch of up to ``2 * len(steps) + len(grow_steps)``
    classifier passes (in chunks, as the pruning's parts step)."""
    if criterion not in PRUNE_CRITERIA:
        raise ValueError(f"unknown prune criterion {criterion!r}; expected any of {PRUNE_CRITERIA}")
    if reach is not None and reach < 0:
        raise ValueError(f"reach must be >= 0 or None, got {reach}")
    if guide_weight < 0:
        raise ValueError(f"guide_weight must be >= 0, got {guide_weight}")
    mask = mask.bool().cpu()
    guide = None if guide is None else guide.detach().float().cpu()
    if criterion == "none" or rounds <= 0:
        return mask
    bar = None if criterion == "decision" else full_log_odds

    def passes(masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        kept, odds = chunked_log_odds(classifier, image, masks, target, baseline)
        return (kept if bar is None else kept & (odds >= bar)), odds

    passing, odds = passes(mask.unsqueeze(0))
    current_passes, current_odds = bool(passing[0]), float(odds[0])
    for _ in range(rounds):
        size = int(mask.sum())
        scores = guided_scores(mask_gradient(classifier, image, baseline, mask, target).cpu(), guide, guide_weight)
        candidates, counts = _candidates(mask, scores, reach, not current_passes, steps, grow_steps)
        if not len(candidates):
            break
        passing, odds = passes(candidates)
        if bool(passing.any()):
            smallest = int(counts[passing].min())
            tied = torch.where(passing & (counts == smallest))[0]
            chosen = int(tied[odds[tied].argmax()])
            no_better = smallest > size or (smallest == size and float(odds[chosen]) <= current_odds)
            if current_passes and no_better:
                break
        else:
            if current_passes:
                break
            # the best candidate no larger than the mask; a larger one only when none of those gains
            chosen = int(odds.argmax())
            no_larger = torch.where(counts <= size)[0]
            if len(no_larger) and float(odds[no_larger].max()) > current_odds:
                chosen = int(no_larger[odds[no_larger].argmax()])
            if float(odds[chosen]) <= current_odds:
                break
        mask, current_passes, current_odds = candidates[chosen], bool(passing[chosen]), float(odds[chosen])
    return mask
