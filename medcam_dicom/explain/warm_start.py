"""Where a per-image optimisation starts: the smallest faithful top fraction of a saliency map.

A fresh U-Net that starts from "keep all" (the paper) spends most of its steps shrinking a mask that is
faithful all the way down: measured on the benchmark, the hard mask stays whole for 20-200 steps and a
median run needs ~250 steps. A level search finds a much smaller faithful start in one batched classifier
run: the masks keeping the top 0, 1, 2, 5, ... 100 % of a cheap saliency map (occlusion sensitivity by
default) are classified together and the smallest that keeps the decision is taken. The per-image U-Net
then learns a residual on top of that start (:class:`PriorOffsetNetwork`), so Med-CAM's own loss still
decides every voxel of the mask; the start only decides where the optimisation begins.

The occlusion windows overlap by half (``MedCAMConfig.warm_start_occlusion``): MONAI's occlusion fades
towards a window's edge, so windows side by side barely occlude a finding that sits where windows meet,
and a finding that stays convincing when one part of it is hidden ranks below background. Side by side,
the start missed the finding on held-out transformers (a start of the whole image); overlapping, it did
not, for ~1.5x the classifier passes (~100 at 128²).

The same map orders the pruning of the optimised mask (``prune_ranking="start"``, per image): the
optimised soft mask is nearly binary, so its own order among the mask's voxels says little about which
of them to drop first; blended with the map's order, the pruning drops first the voxels whose occlusion
moved the decision least.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from medcam_dicom.explain.comparison import GradCAMSaliency, OcclusionSaliency, SaliencyMethod
from medcam_dicom.explain.config import WARM_STARTS
from medcam_dicom.explain.verification import apply_mask, evaluation_mode, forward_logits


def saliency_method(
    name: str, classifier: nn.Module, spatial_shape: Sequence[int], occlusion: tuple[float, float]
) -> SaliencyMethod:
    """The saliency map a warm start ranks voxels by for images of ``spatial_shape``: ``"occlusion"``
    (windows of ``occlusion[0]`` of the longest axis, at least 4 voxels, overlapping by ``occlusion[1]``)
    or ``"gradcam"``."""
    if name == "occlusion":
        window, overlap = occlusion
        size = max(4, round(window * max(spatial_shape)))
        return OcclusionSaliency(classifier, mask_size=size, overlap=overlap)
    if name == "gradcam":
        return GradCAMSaliency(classifier)
    raise ValueError(f"unknown warm start {name!r}; expected any of {WARM_STARTS}")


def top_fraction_masks(scores: torch.Tensor, fractions: Sequence[float]) -> tuple[torch.Tensor, list[float]]:
    """Boolean masks ``(L, *spatial)`` keeping the voxels that score at least the ``fraction``-quantile
    from the top (ties are kept together; fraction 0 keeps nothing), and the score thresholds."""
    flat = scores.detach().flatten().float()
    masks, thresholds = [], []
    for fraction in fractions:
        if fraction <= 0:
            thresholds.append(float("inf"))
            masks.append(torch.zeros_like(scores, dtype=torch.bool))
            continue
        count = min(flat.numel(), max(1, round(fraction * flat.numel())))
        threshold = float(torch.topk(flat, count).values[-1])
        thresholds.append(threshold)
        masks.append(scores >= threshold)
    return torch.stack(masks), thresholds


def smallest_faithful_level(
    classifier: nn.Module, image: torch.Tensor, baseline: torch.Tensor, masks: torch.Tensor, target: int
) -> tuple[int | None, torch.Tensor]:
    """Classify ``image`` hard-masked by each of ``masks`` ``(L, *spatial)`` (smallest first) in one batch;
    returns the index of the first mask that keeps ``target`` the top-1 class (``None`` when none does)
    and the target's probability under every mask."""
    with evaluation_mode(classifier), torch.no_grad():
        logits = forward_logits(classifier, apply_mask(image, masks, baseline))
    probabilities = torch.softmax(logits.float(), dim=1)[:, target]
    kept = (logits.argmax(dim=1) == target).nonzero()
    return (int(kept[0]) if len(kept) else None), probabilities


@dataclass(frozen=True)
class WarmStart:
    """Where a fresh per-image optimisation starts: the ``saliency`` map ranked (the image's spatial
    shape) and its smallest faithful top fraction ``mask`` (boolean; ``None`` when no level keeps the
    decision). The map also orders the pruning of the optimised mask (``prune_ranking="start"``)."""

    saliency: torch.Tensor
    mask: torch.Tensor | None


def find_warm_start(
    classifier: nn.Module,
    image: torch.Tensor,
    baseline: torch.Tensor,
    target: int,
    method: str,
    fractions: Sequence[float],
    occlusion: tuple[float, float],
) -> WarmStart | None:
    """``method``'s saliency map for ``target`` and its smallest faithful top fraction, or ``None`` when
    the saliency method does not apply to this classifier (Grad-CAM on a classifier without any spatial
    feature map; a ViT has its patch projection). ``occlusion``: the occlusion windows, as in
    :func:`saliency_method`."""
    try:
        scores = saliency_method(method, classifier, image.shape[1:], occlusion).saliency(image, target)
    except ValueError:
        return None
    scores = scores.to(image.device)
    masks, _ = top_fraction_masks(scores, fractions)
    level, _ = smallest_faithful_level(classifier, image, baseline, masks, target)
    return WarmStart(saliency=scores, mask=None if level is None else masks[level])


class PriorOffsetNetwork(nn.Module):
    """A mask network whose logits get a fixed offset added: ``network(x) + offset``.

    Med-CAM sets ``offset = prior - network(x)`` at the start, so the hard mask starts exactly as the
    prior's positive voxels and the U-Net learns a change of the start's logits. ``offset`` has the
    shape of the network's output for the (padded) image it is trained on.
    """

    def __init__(self, network: nn.Module, offset: torch.Tensor) -> None:
        super().__init__()
        self.network = network
        self.register_buffer("offset", offset.detach())

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        logits = self.network(image)
        if logits.shape[2:] != self.offset.shape[2:]:
            raise ValueError(
                f"PriorOffsetNetwork: offset of spatial shape {tuple(self.offset.shape[2:])} does not fit "
                f"logits of shape {tuple(logits.shape[2:])}"
            )
        return logits + self.offset


def prior_logits(mask: torch.Tensor, inside: float, outside: float) -> torch.Tensor:
    """``(1, 1, *spatial)`` logits: ``inside`` on the start mask, ``outside`` elsewhere."""
    return torch.where(mask, torch.tensor(inside), torch.tensor(outside)).float()[None, None].to(mask.device)
