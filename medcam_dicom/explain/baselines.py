"""What the classifier sees outside the mask: the baseline, and the random robustness backgrounds."""

from __future__ import annotations

import torch
from monai.transforms import GaussianSmooth


def make_baseline(image: torch.Tensor, kind: str, generator: torch.Generator) -> torch.Tensor:
    """Baseline for ``image`` ``(C, *spatial)``: ``zero``, per-channel ``mean``, ``blur`` (Gaussian,
    sigma = 1/8 of the smallest spatial side) or fixed ``noise`` with the image's channel statistics."""
    spatial_axes = tuple(range(1, image.ndim))
    if kind == "zero":
        return torch.zeros_like(image)
    if kind == "mean":
        return image.mean(dim=spatial_axes, keepdim=True).expand_as(image).clone()
    if kind == "blur":
        sigma = max(min(image.shape[1:]) / 8.0, 1.0)
        return torch.as_tensor(GaussianSmooth(sigma=sigma)(image), dtype=image.dtype)
    if kind == "noise":
        mean = image.mean(dim=spatial_axes, keepdim=True)
        std = image.std(dim=spatial_axes, keepdim=True)
        noise = torch.randn(image.shape, generator=generator, device=image.device, dtype=image.dtype)
        return mean + std * noise
    raise ValueError(f"unknown baseline {kind!r}")


def robustness_backgrounds(
    image: torch.Tensor, kinds: tuple[str, ...], generator: torch.Generator
) -> torch.Tensor:
    """A batch ``(len(kinds), C, *spatial)`` of backgrounds drawn anew: ``zero``, ``blur`` (Gaussian blur
    with sigma drawn from 1/16 to 1/4 of the smallest side), ``gaussian`` and ``uniform`` noise (both with
    the image's per-channel mean and spread)."""
    spatial_axes = tuple(range(1, image.ndim))
    mean = image.mean(dim=spatial_axes, keepdim=True)
    std = image.std(dim=spatial_axes, keepdim=True)
    backgrounds = []
    for kind in kinds:
        if kind == "zero":
            backgrounds.append(torch.zeros_like(image))
        elif kind == "blur":
            side = min(image.shape[1:])
            fraction = float(torch.rand((), generator=generator, device=image.device))
            sigma = max(side * (1.0 / 16.0 + fraction * (1.0 / 4.0 - 1.0 / 16.0)), 1.0)
            backgrounds.append(torch.as_tensor(GaussianSmooth(sigma=sigma)(image), dtype=image.dtype))
        elif kind == "gaussian":
            noise = torch.randn(image.shape, generator=generator, device=image.device)
            backgrounds.append(mean + std * noise)
        elif kind == "uniform":
            noise = torch.rand(image.shape, generator=generator, device=image.device) * 2.0 - 1.0
            backgrounds.append(mean + std * 3.0**0.5 * noise)
        else:
            raise ValueError(f"unknown robustness background {kind!r}")
    return torch.stack(backgrounds)
