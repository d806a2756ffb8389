"""Training data as image batches: what :meth:`AmortizedMedCAM.fit` accepts (a tensor, a list of images,
or a data loader yielding tensors, ``{"image": ...}`` dicts or ``(image, ...)`` tuples)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from medcam_dicom.explain.validation import as_image_tensor, plain_tensor


def images_of(item: Any) -> torch.Tensor:
    """The image batch in a data-loader item: a tensor, a ``{"image": ...}`` dict or an ``(image, ...)``
    tuple (MONAI and torchvision conventions)."""
    if isinstance(item, dict):
        if "image" not in item:
            raise ValueError(f"a data-loader item is a dict without an 'image' key (keys: {sorted(item)})")
        item = item["image"]
    elif isinstance(item, (tuple, list)) and item and isinstance(item[0], torch.Tensor):
        item = item[0]
    if not isinstance(item, torch.Tensor):
        raise ValueError(f"expected image tensors from the training data, got {type(item).__name__}")
    return plain_tensor(item)


def as_batch(images: torch.Tensor | np.ndarray | Sequence[torch.Tensor]) -> torch.Tensor:
    """Images ``(N, C, *spatial)`` from a batch tensor/array or a sequence of ``(C, *spatial)`` images."""
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(images)
    if isinstance(images, torch.Tensor):
        if images.ndim not in (4, 5):
            raise ValueError(
                f"expected a batch (N, C, H, W) or (N, C, D, H, W), got shape {tuple(images.shape)}"
            )
        return plain_tensor(images).float()
    items = [as_image_tensor(image) for image in images]
    if not items:
        raise ValueError("got no images")
    shapes = {tuple(item.shape) for item in items}
    if len(shapes) > 1:
        raise ValueError(f"all images must have one shape to be batched, got {sorted(shapes)}")
    return torch.stack(items)
