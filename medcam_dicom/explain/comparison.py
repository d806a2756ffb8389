"""Comparison methods behind one interface: a saliency map (higher = more evidence) that can be
thresholded to a binary mask of a given area, so that every method is compared at equal area.

- :class:`GradCAMSaliency` wraps ``monai.visualize.GradCAM`` (one forward + backward) and, with
  ``plus_plus=True``, ``monai.visualize.GradCAMpp``;
- :class:`OcclusionSaliency` wraps ``monai.visualize.OcclusionSensitivity`` (many forwards);
- :class:`RISESaliency` is RISE (Petsiuk et al. 2018): the target probability under random smooth masks,
  averaged per voxel (hundreds of batched forwards).

Med-CAM's own soft mask (``Explanation.soft_mask``) plays the saliency role for rank-based metrics.
"""

from __future__ import annotations

import time
import warnings
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from monai.visualize import GradCAM, GradCAMpp, OcclusionSensitivity
from torch import nn

from medcam_dicom.explain.explanation import Explanation
from medcam_dicom.explain.features import spatial_stage_layers
from medcam_dicom.explain.validation import as_image_tensor, check_channels, check_target, plain_tensor
from medcam_dicom.explain.verification import evaluation_mode, forward_logits, resolve_device, verify_mask


class SaliencyMethod(Protocol):
    """Anything that scores every voxel of an image for a target class."""

    name: str

    def saliency(self, image: torch.Tensor, target: int) -> torch.Tensor:
        """A float map with the image's spatial shape; higher means more evidence for ``target``."""


def mask_at_area(saliency: torch.Tensor, area_fraction: float) -> torch.Tensor:
    """Boolean mask of the ``round(area_fraction * N)`` highest-scoring voxels (ties: lower index first)."""
    if not 0.0 <= area_fraction <= 1.0:
        raise ValueError(f"area_fraction must lie in [0, 1], got {area_fraction}")
    flat = saliency.detach().flatten().float().cpu()
    count = int(round(area_fraction * flat.numel()))
    mask = torch.zeros(flat.numel(), dtype=torch.bool)
    if count:
        order = np.argsort(-flat.numpy(), kind="stable")[:count]
        mask[torch.from_numpy(order)] = True
    return mask.view(saliency.shape)


def rescale(cam: torch.Tensor) -> torch.Tensor:
    """Min-max to [0, 1] keeping the orientation (MONAI's default post-processing flips it)."""
    low, high = cam.min(), cam.max()
    return (cam - low) / (high - low) if high > low else torch.zeros_like(cam)


class GradCAMSaliency:
    """Grad-CAM (or Grad-CAM++ with ``plus_plus``) at ``layer`` (default: the end of the deepest spatial
    stage - for a transformer, the patch projection or stem that makes its tokens)."""

    def __init__(self, classifier: nn.Module, layer: str | None = None, plus_plus: bool = False) -> None:
        self.classifier = classifier
        self.layer = layer
        self.plus_plus = plus_plus
        self.name = "gradcam++" if plus_plus else "gradcam"
        self._chosen: dict[tuple[int, ...], str] = {}  # default layer per image shape, traced once

    def saliency(self, image: torch.Tensor, target: int) -> torch.Tensor:
        device = resolve_device(self.classifier, None)
        batch = image.unsqueeze(0).to(device)
        with evaluation_mode(self.classifier):
            layer = self.layer or self._chosen.get(tuple(image.shape))
            if layer is None:
                spatial = spatial_stage_layers(self.classifier, batch)
                if not spatial:
                    raise ValueError("Grad-CAM needs a classifier with spatial feature maps")
                layer = self._chosen[tuple(image.shape)] = spatial[-1]
            hooks_before = {m: (set(m._forward_hooks), set(m._backward_hooks)) for m in self.classifier.modules()}
            try:
                cam_class = GradCAMpp if self.plus_plus else GradCAM
                # through _LogitsOnly: MONAI's CAM indexes the output as logits (a ViT returns a tuple)
                cam = cam_class(_LogitsOnly(self.classifier), target_layers=f"classifier.{layer}",
                                postprocessing=rescale)
                with warnings.catch_warnings():
                    # a layer fed by the image itself (a transformer's stem): its gradient hook warns, harmlessly
                    warnings.filterwarnings("ignore", "Full backward hook is firing", UserWarning)
                    result = cam(batch, class_idx=target)
            finally:
                # MONAI's GradCAM leaves its hooks on the layer and fills .grad: leave neither behind
                for module, (forward, backward) in hooks_before.items():
                    for key in set(module._forward_hooks) - forward:
                        del module._forward_hooks[key]
                    for key in set(module._backward_hooks) - backward:
                        del module._backward_hooks[key]
                self.classifier.zero_grad(set_to_none=True)
        return plain_tensor(result[0, 0].detach())


class _LogitsOnly(nn.Module):
    """The classifier seen through :func:`forward_logits`: MONAI's occlusion and CAMs expect a tensor
    output, while e.g. MONAI's ViT returns ``(logits, hidden_states)``. Made in eval mode: MONAI's
    ``eval_mode`` calls ``train()`` on exit on a module that was training when it entered, and that would
    switch the classifier inside to training mode. Only the wrapper's own flag is set (``eval()`` would
    reach the classifier's modules too)."""

    def __init__(self, classifier: nn.Module) -> None:
        super().__init__()
        self.classifier = classifier
        self.training = False

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return forward_logits(self.classifier, batch)


class OcclusionSaliency:
    """Occlusion sensitivity: the drop of the target probability when a patch is occluded."""

    name = "occlusion"

    def __init__(self, classifier: nn.Module, mask_size: int = 16, overlap: float = 0.6, n_batch: int = 32):
        self.classifier = classifier
        self.mask_size = mask_size
        self.overlap = overlap
        self.n_batch = n_batch

    def saliency(self, image: torch.Tensor, target: int) -> torch.Tensor:
        device = resolve_device(self.classifier, None)
        batch = image.unsqueeze(0).to(device)
        size = [min(self.mask_size, s) for s in image.shape[1:]]
        occlusion = OcclusionSensitivity(
            _LogitsOnly(self.classifier), mask_size=size, n_batch=self.n_batch, overlap=self.overlap, verbose=False
        )
        with evaluation_mode(self.classifier), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # MONAI's indexing deprecation notices, per call
            probability = torch.softmax(forward_logits(self.classifier, batch), dim=1)[0, target]
            occluded, _ = occlusion(batch)
        # occluded: (1, K, *spatial) probabilities with the patch around each voxel occluded
        return plain_tensor(probability - occluded[0, target]).detach().float()


class RISESaliency:
    """RISE: ``masks`` random binary grids of ``grid`` cells per axis (each cell kept with probability
    ``keep``), upsampled smoothly with a random sub-cell shift; a voxel's saliency is the mean target
    probability of the masked images that keep it, normalised by ``keep``. The image is masked onto
    zero (the normalised mean) as in the paper. Seeded: the same image gives the same map."""

    name = "rise"

    def __init__(
        self, classifier: nn.Module, masks: int = 500, grid: int = 8, keep: float = 0.5, batch_size: int = 50,
        seed: int = 0,
    ) -> None:
        self.classifier = classifier
        self.masks = masks
        self.grid = grid
        self.keep = keep
        self.batch_size = batch_size
        self.seed = seed

    def random_masks(self, spatial: tuple[int, ...], count: int, generator: torch.Generator) -> torch.Tensor:
        """``(count, 1, *spatial)`` float masks in [0, 1]."""
        cells = [max(1, -(-s // self.grid)) for s in spatial]
        coarse = (torch.rand((count, 1, *[self.grid] * len(spatial)), generator=generator) < self.keep).float()
        size = [(self.grid + 1) * c for c in cells]
        mode = "bilinear" if len(spatial) == 2 else "trilinear"
        smooth = F.interpolate(coarse, size=size, mode=mode, align_corners=False)
        out = torch.empty((count, 1, *spatial))
        for i in range(count):
            shift = [int(torch.randint(0, c, (), generator=generator)) for c in cells]
            out[i] = smooth[(i, slice(None), *[slice(o, o + s) for o, s in zip(shift, spatial)])]
        return out

    def saliency(self, image: torch.Tensor, target: int) -> torch.Tensor:
        device = resolve_device(self.classifier, None)
        image = image.to(device)
        spatial = tuple(image.shape[1:])
        generator = torch.Generator().manual_seed(self.seed)
        total = torch.zeros(spatial, device=device)
        with evaluation_mode(self.classifier), torch.no_grad():
            for start in range(0, self.masks, self.batch_size):
                masks = self.random_masks(spatial, min(self.batch_size, self.masks - start), generator).to(device)
                logits = forward_logits(self.classifier, masks * image.unsqueeze(0))
                probabilities = torch.softmax(logits.float(), dim=1)[:, target]
                total += (probabilities.view(-1, *[1] * (len(spatial) + 1)) * masks).sum(dim=(0, 1))
        return (total / (self.masks * self.keep)).detach().float()


def explain_at_area(
    method: SaliencyMethod,
    classifier: nn.Module,
    image: torch.Tensor,
    area_fraction: float,
    baseline: torch.Tensor,
    target: int | None = None,
) -> tuple[Explanation, torch.Tensor]:
    """Threshold ``method``'s saliency to a mask of ``area_fraction`` and verify it like Med-CAM does;
    returns the :class:`Explanation` and the saliency map."""
    started = time.perf_counter()
    image = as_image_tensor(image)
    check_channels(classifier, image)
    device = resolve_device(classifier, None)
    image, baseline = image.to(device), baseline.to(device)
    with evaluation_mode(classifier), torch.no_grad():
        logits = forward_logits(classifier, image.unsqueeze(0))
    checked = check_target(target, logits.shape[1])
    target_index = int(logits.argmax(dim=1)) if checked is None else checked
    probability = float(torch.softmax(logits, dim=1)[0, target_index])
    saliency = method.saliency(image, target_index).to(device)
    mask = mask_at_area(saliency, area_fraction)
    faithful, masked_probability = verify_mask(classifier, image, mask.to(device), target_index, baseline)
    explanation = Explanation(
        mask=mask.cpu(),
        soft_mask=rescale(saliency.float()).cpu(),
        target=target_index,
        probability=probability,
        masked_probability=masked_probability,
        faithful=faithful,
        area_fraction=float(mask.float().mean()),
        steps=0,
        seconds=time.perf_counter() - started,
        method=method.name,
    )
    return explanation, saliency.cpu()
