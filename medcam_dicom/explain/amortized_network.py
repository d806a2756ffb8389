"""The amortised explainer's networks: :class:`FeatureMaskDecoder` (mask logits of every class from the
image and the classifier's feature maps) and :class:`ClassMaskNetwork` (the decoder seen through one image
and one class, the warm start of a per-image refinement)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.networks.blocks import Convolution
from torch import nn


class FeatureMaskDecoder(nn.Module):
    """The amortised explainer network: mask logits for every class, ``(B, K, *spatial)``, decoded from
    the image and from the classifier's own feature maps (the matched layers, recorded during the
    forward pass that decides the target anyway).

    Reading the classifier's features is what makes one network serve a whole dataset: an explainer that
    sees only pixels must rediscover what the classifier responds to, and in our measurements a plain
    U-Net trained over a dataset learned a per-class shortcut (keep everything for one class, nothing
    for the other) instead of localising. Dabkowski & Gal (2017) build their real-time saliency model on
    the classifier's feature pyramid for the same reason (a transformer's: the stem or patch projection
    that makes its tokens - its tokens themselves let the decoder read the decision off every token and
    collapse, measured on the zoo's ViTs). Each feature map goes through a 1x1
    convolution, is resized to ``1/coarseness`` of the image and summed with a convolution of the
    downsampled image; two 3x3 convolutions and a 1x1 convolution give the coarse logits, interpolated
    back to full size. Coarse masks also keep the explainer from "drawing" evidence with fine speckle.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        feature_channels: Sequence[int],
        num_classes: int,
        width: int = 32,
        coarseness: int = 4,
        initial_keep_probability: float = 0.55,
    ) -> None:
        super().__init__()
        self.spatial_dims = spatial_dims
        self.coarseness = coarseness
        self.stem = Convolution(spatial_dims, in_channels, width, kernel_size=3, act="relu", norm="batch")
        self.laterals = nn.ModuleList(
            Convolution(spatial_dims, channels, width, kernel_size=1, conv_only=True)
            for channels in feature_channels
        )
        self.head = nn.Sequential(
            Convolution(spatial_dims, width, width, kernel_size=3, act="relu", norm="batch"),
            Convolution(spatial_dims, width, width, kernel_size=3, act="relu", norm="batch"),
            Convolution(spatial_dims, width, num_classes, kernel_size=1, conv_only=True),
        )
        last = self.head[-1].conv
        with torch.no_grad():
            last.weight.mul_(0.1)
            last.bias.fill_(math.log(initial_keep_probability / (1.0 - initial_keep_probability)))

    def forward(self, image: torch.Tensor, features: Sequence[torch.Tensor]) -> torch.Tensor:
        spatial = tuple(image.shape[2:])
        coarse = tuple(max(1, math.ceil(size / self.coarseness)) for size in spatial)
        mode = "bilinear" if self.spatial_dims == 2 else "trilinear"
        pool = F.adaptive_avg_pool2d if self.spatial_dims == 2 else F.adaptive_avg_pool3d
        fused = self.stem(pool(image, coarse))
        for lateral, feature in zip(self.laterals, features):
            fused = fused + F.interpolate(lateral(feature), size=coarse, mode=mode, align_corners=False)
        return F.interpolate(self.head(fused), size=spatial, mode=mode, align_corners=False)


class ClassMaskNetwork(nn.Module):
    """The amortised decoder seen through one image and one class: ``(1, C, *spatial)`` image to
    ``(1, 1, *spatial)`` logits of ``target``, with the classifier features of that image held fixed.
    This is the warm start handed to :meth:`MedCAM.refine`."""

    def __init__(
        self, decoder: FeatureMaskDecoder, features: Sequence[torch.Tensor], target: int, shift: float = 0.0
    ) -> None:
        super().__init__()
        self.decoder = decoder
        self.features = [feature.detach() for feature in features]
        self.target = target
        self.shift = shift  # subtracted from the logits: moves the mask's threshold

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.decoder(image, self.features)[:, self.target : self.target + 1] - self.shift
