"""MONAI transforms the bundle's configs add around the classifier's own preprocessing."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from monai.config import KeysCollection
from monai.transforms import MapTransform


class EvidenceMaskd(MapTransform):
    """Ground-truth evidence masks on the grid of the preprocessed image.

    For each key: a loaded mask (channel first, any grid) becomes a boolean ``(1, *spatial)`` tensor of
    ``reference``'s spatial shape (nearest-neighbour resampling, non-zero = evidence); a missing key (a
    datalist entry without ``"evidence"``) becomes an empty mask, so that batches of images with and
    without ground truth collate. The mask is resampled to the image's final shape, which matches the
    preprocessing when it resizes (as classifiers' preprocessing usually does) but not when it crops.
    """

    def __init__(self, keys: KeysCollection, reference: str = "image") -> None:
        super().__init__(keys, allow_missing_keys=True)
        self.reference = reference

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        if self.reference not in d:
            raise ValueError(f"EvidenceMaskd: the item has no {self.reference!r} to take the grid from")
        spatial = tuple(d[self.reference].shape[1:])
        for key in self.keys:
            if d.get(key) is None or isinstance(d.get(key), str) and not d[key]:
                d[key] = torch.zeros((1, *spatial), dtype=torch.bool)
                continue
            mask = torch.as_tensor(d[key]).float()
            if mask.ndim == len(spatial):  # a mask without its channel
                mask = mask[None]
            if mask.ndim != len(spatial) + 1:
                raise ValueError(
                    f"EvidenceMaskd: {key!r} has shape {tuple(mask.shape)}, the image {tuple(d[self.reference].shape)}"
                )
            mask = mask.amax(dim=0, keepdim=True)  # any channel marks evidence
            if tuple(mask.shape[1:]) != spatial:
                mask = F.interpolate(mask[None], size=spatial, mode="nearest-exact")[0]
            d[key] = mask > 0
        return d
