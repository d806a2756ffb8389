"""The mask network (a MONAI U-Net trained from scratch) and the straight-through binary mask."""

from __future__ import annotations

import math

import torch
from monai.networks.nets import UNet
from torch import nn


def build_mask_network(
    spatial_dims: int,
    in_channels: int,
    channels: tuple[int, ...],
    strides: tuple[int, ...],
    num_res_units: int,
    initial_keep_probability: float,
    out_channels: int = 1,
) -> UNet:
    """A MONAI U-Net ``in_channels -> out_channels`` mask logits (one per class for the amortised
    explainer), its output bias set so that ``sigmoid(logit) ~= initial_keep_probability`` everywhere
    at the start."""
    network = UNet(
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        out_channels=out_channels,
        channels=channels,
        strides=strides,
        num_res_units=num_res_units,
    )
    last_conv = [m for m in network.modules() if isinstance(m, (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d,
                                                                  nn.ConvTranspose3d))][-1]
    with torch.no_grad():
        last_conv.weight.mul_(0.1)
        if last_conv.bias is not None:
            last_conv.bias.fill_(math.log(initial_keep_probability / (1.0 - initial_keep_probability)))
    return network


def pad_to_multiple(image: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, ...]]:
    """Replicate-pad the spatial axes of ``(B, C, *spatial)`` up to a multiple of ``multiple``;
    returns the padded tensor and the original spatial shape (for :func:`crop_to_shape`)."""
    spatial = tuple(image.shape[2:])
    pad: list[int] = []
    for size in reversed(spatial):
        pad.extend([0, (-size) % multiple])
    if any(pad):
        mode = "replicate" if image.ndim in (4, 5) else "constant"
        image = nn.functional.pad(image, pad, mode=mode)
    return image, spatial


def crop_to_shape(tensor: torch.Tensor, spatial: tuple[int, ...]) -> torch.Tensor:
    """Undo :func:`pad_to_multiple`."""
    return tensor[(..., *[slice(0, s) for s in spatial])]


def coarse_logits(logits: torch.Tensor, cell: int) -> torch.Tensor:
    """Mask logits ``(B, C, *spatial)`` averaged over cells of ``cell`` voxels per axis and interpolated
    back linearly: a smooth mask with ``1/cell`` of the degrees of freedom per axis (RISE's masks are
    smooth cells too). ``cell=1`` returns the logits unchanged."""
    if cell == 1:
        return logits
    spatial = tuple(logits.shape[2:])
    cells = [math.ceil(size / cell) for size in spatial]
    pool = nn.functional.adaptive_avg_pool2d if len(spatial) == 2 else nn.functional.adaptive_avg_pool3d
    mode = "bilinear" if len(spatial) == 2 else "trilinear"
    return nn.functional.interpolate(pool(logits, cells), size=spatial, mode=mode, align_corners=False)


#: the least gradient ``d bounded / d z`` of :func:`mask_probabilities`' bound, however large ``|z|`` is
GRADIENT_FLOOR = 0.05


def mask_probabilities(logits: torch.Tensor, bound: float = 6.0) -> torch.Tensor:
    """``sigmoid(bound * tanh(z / bound))``: the soft mask ``p``, kept inside
    ``[sigmoid(-bound), sigmoid(bound)]``. ``tanh`` alone would stop every gradient once the network's
    logits ``z`` run far past the bound (``1 - tanh^2`` is 2e-9 at ``z = 40``), and a voxel saturated there
    could never come back; a straight-through term adds :data:`GRADIENT_FLOOR` to the bound's gradient
    without changing its value, so the gradient w.r.t. ``z`` is at least ``GRADIENT_FLOOR * p (1 - p)``
    with ``p (1 - p) >= 0.0025``."""
    bounded = bound * torch.tanh(logits / bound)
    bounded = bounded + GRADIENT_FLOOR * (logits - logits.detach())  # value unchanged, gradient floored
    return torch.sigmoid(bounded)


def straight_through_mask(soft_mask: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Binary in the forward pass, identity gradient in the backward pass:
    ``m = p + (1[p > t] - p).detach()``."""
    hard = (soft_mask > threshold).to(soft_mask.dtype)
    return soft_mask + (hard - soft_mask).detach()
