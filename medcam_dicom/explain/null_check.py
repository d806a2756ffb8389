"""The null check: do random masks of the same area and smoothness also keep the decision?

"The classifier keeps its decision on the evidence alone" says little when it keeps it on almost any
region of that size. :func:`random_keep_rate` draws random smooth blobs with exactly the mask's voxel
count and blobs of the mask's typical size (its area per connected component), classifies all of them in
one batch and returns the share that keeps the target the top-1 class. A high share means the check is
weak for this image: the decision rests on something a random region also provides (background, texture,
the cut-out edges themselves), and a reader should not take the mask as *the* evidence.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import nn

from medcam_dicom.explain.config import MedCAMConfig
from medcam_dicom.explain.explanation import Explanation
from medcam_dicom.explain.verification import apply_mask, evaluation_mode, forward_logits


def blob_size(mask: torch.Tensor) -> float:
    """The typical blob diameter of a boolean mask in voxels: ``(voxels / components) ** (1 / dims)``
    (the whole image for an empty mask)."""
    array = mask.detach().bool().cpu().numpy()
    count = int(array.sum())
    if count == 0:
        return float(max(array.shape))
    _, components = ndimage.label(array)
    return float((count / max(components, 1)) ** (1.0 / array.ndim))


def random_smooth_masks(
    spatial_shape: tuple[int, ...], voxels: int, count: int, generator: torch.Generator, blob: float,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """``count`` boolean masks of ``spatial_shape`` on ``device``, each keeping exactly ``voxels`` voxels: the
    top of a Gaussian random field smoothed to blobs of about ``blob`` voxels across (coarse noise from the
    CPU ``generator``, upsampled on ``device``: the same blobs wherever it runs)."""
    device = torch.device(device)
    coarse_shape = [max(2, int(round(s / max(blob, 1.0)))) for s in spatial_shape]
    coarse = torch.randn((count, 1, *coarse_shape), generator=generator).to(device)
    mode = "bilinear" if len(spatial_shape) == 2 else "trilinear"
    field = F.interpolate(coarse, size=tuple(spatial_shape), mode=mode, align_corners=False).flatten(1)
    if device.type == "cpu":
        jitter = torch.rand(field.shape, generator=generator)
    else:  # full-size noise drawn where the field is: no CPU work or copy of count x voxels values
        seed = int(torch.randint(0, 2**62, (), generator=generator))
        jitter = torch.rand(field.shape, generator=torch.Generator(device).manual_seed(seed), device=device)
    field = field + 1e-6 * jitter  # no ties at the threshold
    masks = torch.zeros_like(field, dtype=torch.bool)
    if voxels > 0:
        masks.scatter_(1, field.topk(min(voxels, field.shape[1]), dim=1).indices, True)
    return masks.view(count, *spatial_shape)


def random_keep_rate(
    classifier: nn.Module,
    image: torch.Tensor,
    mask: torch.Tensor,
    target: int,
    baseline: torch.Tensor,
    count: int = 32,
    seed: int = 0,
    batch_size: int = 32,
) -> float:
    """Share of ``count`` random smooth masks, with ``mask``'s area and blob size, on which the classifier
    still calls ``target`` (image ``(C, *spatial)`` hard-masked onto ``baseline``). 0 = only this mask's
    region carries the decision; near 1 = almost any region of this size does."""
    if count < 1:
        raise ValueError(f"the null check needs at least one random mask, got count={count}")
    generator = torch.Generator().manual_seed(seed)
    masks = random_smooth_masks(tuple(image.shape[1:]), int(mask.bool().sum()), count, generator, blob_size(mask),
                                device=image.device)
    kept = 0
    with evaluation_mode(classifier), torch.no_grad():
        for start in range(0, count, batch_size):
            keep = masks[start : start + batch_size].to(image.device)
            logits = forward_logits(classifier, apply_mask(image, keep, baseline))
            kept += int((logits.argmax(dim=1) == target).sum())
    return float(np.float64(kept) / count)


def attach_null_check(
    explanation: Explanation, classifier: nn.Module, image: torch.Tensor, baseline: torch.Tensor,
    config: MedCAMConfig,
) -> Explanation:
    """Fill ``explanation.random_keep`` and ``.specific`` (``config.null_masks`` random masks, seeded by
    ``config.seed``); a no-op when ``null_masks`` is 0. Returns the explanation."""
    if config.null_masks <= 0:
        return explanation
    keep = random_keep_rate(classifier, image, explanation.mask.to(image.device), explanation.target, baseline,
                            count=config.null_masks, seed=config.seed)
    explanation.random_keep = keep
    explanation.specific = bool(explanation.faithful and keep < config.null_limit)
    return explanation
