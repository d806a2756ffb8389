"""How good an explanation is, measured against the classifier and against ground truth.

Sufficiency (the mask alone keeps the decision), necessity and comprehensiveness (removing the mask
lowers the probability, flips the decision), minimality (the smallest top-k area of a ranking that keeps
the decision), a ranking's smallest top-k mask holding as much evidence as a given mask (to compare
precision at equal evidence, not only at equal area), IoU, precision and pointing game against the lesion,
deletion and insertion AUC (rank-based: use a soft map).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from medcam_dicom.explain.config import PRUNE_IMAGE_FRACTIONS
from medcam_dicom.explain.verification import apply_mask, evaluation_mode, forward_logits, masked_log_odds
from medcam_dicom.explain.warm_start import smallest_faithful_level, top_fraction_masks

#: the top-k areas the minimality search tries: 0.25 % to 100 % of the image, each 20 % above the last
#: (the grid ``prune="sufficient"`` grows a mask on)
MINIMALITY_LEVELS = PRUNE_IMAGE_FRACTIONS


def iou(mask: torch.Tensor, truth: torch.Tensor) -> float:
    """Intersection over union of two boolean masks (1.0 when both are empty)."""
    mask, truth = mask.bool().cpu(), truth.bool().cpu()
    union = int((mask | truth).sum())
    return 1.0 if union == 0 else int((mask & truth).sum()) / union


def precision(mask: torch.Tensor, truth: torch.Tensor) -> float:
    """Share of the mask's voxels that lie on the ground truth (0.0 for an empty mask)."""
    mask, truth = mask.bool().cpu(), truth.bool().cpu()
    count = int(mask.sum())
    return 0.0 if count == 0 else int((mask & truth).sum()) / count


def pointing_game(saliency: torch.Tensor, truth: torch.Tensor) -> bool:
    """Whether the saliency maximum falls inside the ground truth. When several voxels share the
    maximum (a plateau, as in an upsampled Grad-CAM), the point is their centre of mass."""
    saliency = saliency.detach().float().cpu()
    peak = torch.nonzero(saliency == saliency.max()).float().mean(dim=0).round().long()
    return bool(truth.cpu()[tuple(peak.tolist())])


def target_probabilities(
    classifier: nn.Module, images: torch.Tensor, target: int, batch_size: int = 32
) -> np.ndarray:
    """Softmax probability of ``target`` for every image of a batch ``(B, C, *spatial)``."""
    results = []
    with evaluation_mode(classifier), torch.no_grad():
        for start in range(0, images.shape[0], batch_size):
            logits = forward_logits(classifier, images[start : start + batch_size])
            results.append(torch.softmax(logits.float(), dim=1)[:, target].cpu())
    return torch.cat(results).numpy()


def necessity(
    classifier: nn.Module, image: torch.Tensor, mask: torch.Tensor, target: int, baseline: torch.Tensor
) -> float:
    """Probability of ``target`` on the full image minus on the image with the mask removed."""
    batch = torch.stack([image, apply_mask(image, ~mask.bool(), baseline)])
    full, removed = target_probabilities(classifier, batch, target)
    return float(full - removed)


def deletion_insertion_auc(
    classifier: nn.Module,
    image: torch.Tensor,
    saliency: torch.Tensor,
    target: int,
    baseline: torch.Tensor,
    steps: int = 20,
) -> tuple[float, float]:
    """Deletion AUC (lower is better: remove most salient first) and insertion AUC (higher is better:
    reveal most salient first onto the baseline), both the mean probability over ``steps + 1`` points."""
    flat = saliency.detach().flatten().float().cpu().numpy()
    order = torch.from_numpy(np.argsort(-flat, kind="stable").copy())
    count = flat.size
    keeps = []
    for step in range(steps + 1):
        revealed = torch.zeros(count, dtype=torch.bool)
        revealed[order[: int(round(count * step / steps))]] = True
        keeps.append(revealed.view(saliency.shape))
    keeps_tensor = torch.stack(keeps).to(image.device)
    inserted = apply_mask(image, keeps_tensor, baseline)
    deleted = apply_mask(image, ~keeps_tensor, baseline)
    insertion = target_probabilities(classifier, inserted, target)
    deletion = target_probabilities(classifier, deleted, target)
    return float(np.trapezoid(deletion) / steps), float(np.trapezoid(insertion) / steps)


def removal(
    classifier: nn.Module, image: torch.Tensor, mask: torch.Tensor, target: int, baseline: torch.Tensor
) -> tuple[float, bool]:
    """Comprehensiveness of a mask: the target's probability once the mask is replaced by ``baseline``
    (blurred away, for the benchmark's blur baseline), and whether the decision then flips."""
    removed = apply_mask(image, ~mask.bool(), baseline).unsqueeze(0)
    with evaluation_mode(classifier), torch.no_grad():
        logits = forward_logits(classifier, removed)
    probability = float(torch.softmax(logits.float(), dim=1)[0, target])
    return probability, int(logits.argmax(dim=1)) != target


def smallest_faithful_area(
    classifier: nn.Module,
    image: torch.Tensor,
    saliency: torch.Tensor,
    target: int,
    baseline: torch.Tensor,
    probability: float,
    levels: tuple[float, ...] = MINIMALITY_LEVELS,
) -> tuple[float | None, float | None]:
    """Minimality of a ranking: the area fractions of the smallest top-k masks of ``saliency`` (over
    ``levels``) that (1) keep ``target`` the top-1 class and (2) keep its probability at least at
    ``probability``, the full image's (what Med-CAM's stopping rule asks of its own mask); ``None`` where
    no level does."""
    masks, _ = top_fraction_masks(saliency.to(image.device), levels)
    level, probabilities = smallest_faithful_level(classifier, image, baseline, masks, target)
    if level is None:
        return None, None
    kept = float(masks[level].float().mean())
    preserving = (probabilities >= probability - 1e-6).nonzero()  # batched and single forwards differ in the 7th digit
    preserving = preserving[preserving[:, 0] >= level]  # and the decision kept
    preserved = float(masks[int(preserving[0, 0])].float().mean()) if len(preserving) else None
    return kept, preserved


def equal_evidence_mask(
    classifier: nn.Module,
    image: torch.Tensor,
    saliency: torch.Tensor,
    target: int,
    baseline: torch.Tensor,
    log_odds: float,
    levels: tuple[float, ...] = MINIMALITY_LEVELS,
    refine: int = 8,
) -> torch.Tensor:
    """The smallest top-k mask of ``saliency`` that keeps ``target`` the top-1 class with its log-odds at
    least ``log_odds`` (e.g. another explanation's masked log-odds: the ranking's mask *holding as much
    evidence*): over ``levels`` (fractions of the image) in one batch, then ``refine`` areas evenly spaced
    in ratio between the passing level and the one below in a second. The top 100 % is the full image,
    which passes whenever ``log_odds`` is at most the full image's (batched and single passes differ in
    the 7th digit, so it passes within 1e-5); above that, ``None``. Ties are kept together (as in
    :func:`~medcam_dicom.explain.warm_start.top_fraction_masks`)."""
    fractions = tuple(levels) if 1.0 in levels else (*levels, 1.0)
    masks, _ = top_fraction_masks(saliency.to(image.device), fractions)  # the last one keeps every voxel
    kept, odds = masked_log_odds(classifier, image, masks, target, baseline)
    passing = (kept & (odds >= log_odds)).nonzero()
    if not len(passing):
        return masks[-1] if bool(kept[-1]) and float(odds[-1]) >= log_odds - 1e-5 else None
    chosen = int(passing[0])
    if refine <= 0 or chosen == 0:
        return masks[chosen]
    low, high = fractions[chosen - 1], fractions[chosen]
    low = max(low, 1.0 / saliency.numel())
    finer = [low * (high / low) ** (k / (refine + 1)) for k in range(1, refine + 1)]
    candidates, _ = top_fraction_masks(saliency.to(image.device), finer)
    kept, odds = masked_log_odds(classifier, image, candidates, target, baseline)
    passing = (kept & (odds >= log_odds)).nonzero()
    return candidates[int(passing[0])] if len(passing) else masks[chosen]
