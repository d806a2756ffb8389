"""Input checks shared by every explainer: each failure is a ``ValueError`` naming the problem."""

from __future__ import annotations

import numpy as np
import torch
from monai.utils import convert_to_tensor
from torch import nn


def plain_tensor(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor``'s values as a plain ``torch.Tensor`` (same dtype and device): MONAI transforms and
    ``monai.visualize`` return ``MetaTensor``s, whose metadata tracking runs through every later operation
    - in every classifier pass on a masked image built from one (measured: a third of an amortised
    explanation's time on a DenseNet)."""
    return convert_to_tensor(tensor, track_meta=False)


def as_image_tensor(image: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Return ``image`` as a float32 tensor ``(C, H, W)`` or ``(C, D, H, W)`` after checking it.

    Raises:
        ValueError: wrong type, wrong number of dimensions, an empty axis, or NaN/inf values.
    """
    if isinstance(image, np.ndarray):
        image = torch.from_numpy(np.ascontiguousarray(image))
    if not isinstance(image, torch.Tensor):
        raise ValueError(f"image must be a torch.Tensor or numpy array, got {type(image).__name__}")
    image = plain_tensor(image)  # a MONAI MetaTensor's metadata is not needed here
    if image.ndim not in (3, 4):
        raise ValueError(
            "image must have shape (C, H, W) for 2D or (C, D, H, W) for 3D, "
            f"got {image.ndim} dimensions {tuple(image.shape)}"
        )
    if min(image.shape) < 1:
        raise ValueError(f"image has an empty axis: shape {tuple(image.shape)}")
    if image.is_complex() or image.dtype == torch.bool:
        raise ValueError(f"image must hold real numbers, got dtype {image.dtype}")
    image = image.to(torch.float32)
    if not torch.isfinite(image).all():
        bad = int((~torch.isfinite(image)).sum())
        raise ValueError(f"image contains {bad} NaN or infinite value(s)")
    return image


def expected_input_channels(classifier: nn.Module) -> tuple[str, int] | None:
    """Name and ``in_channels`` of the classifier's first convolution, or ``None`` if it has none."""
    for name, module in classifier.named_modules():
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            return name, module.in_channels
    return None


def check_channels(classifier: nn.Module, image: torch.Tensor) -> None:
    """Raise ``ValueError`` when the image's channel count cannot feed the classifier's first conv."""
    first = expected_input_channels(classifier)
    if first is not None and first[1] != image.shape[0]:
        raise ValueError(
            f"image has {image.shape[0]} channel(s) but the classifier's first convolution "
            f"{first[0]!r} expects {first[1]}"
        )


def logits_of(output: object, batch_size: int) -> torch.Tensor:
    """Extract and check ``(B, K)`` logits from a classifier's output.

    A tuple or list output (MONAI's ViT returns ``(logits, hidden_states)``) contributes its first
    element.
    """
    if isinstance(output, (tuple, list)) and output:
        output = output[0]
    if not isinstance(output, torch.Tensor):
        raise ValueError(f"classifier must return a logits tensor (B, K), got {type(output).__name__}")
    if output.ndim != 2 or output.shape[0] != batch_size or output.shape[1] < 2:
        raise ValueError(
            f"classifier must return logits of shape (B, K) with B={batch_size} and K >= 2, "
            f"got shape {tuple(output.shape)}"
        )
    if not torch.isfinite(output).all():
        raise ValueError("classifier returned NaN or infinite logits")
    return output


def check_target(target: int | None, num_classes: int) -> int | None:
    """Return ``target`` as an int after checking it lies in ``[0, num_classes)``."""
    if target is None:
        return None
    if isinstance(target, torch.Tensor):
        if target.numel() != 1:
            raise ValueError(f"target must be a single class index, got a tensor of shape {tuple(target.shape)}")
        target = int(target.item())
    if isinstance(target, bool) or not isinstance(target, (int, np.integer)):
        raise ValueError(f"target must be an int class index, got {target!r}")
    if not 0 <= int(target) < num_classes:
        raise ValueError(f"target {target} is out of range: the classifier has {num_classes} classes")
    return int(target)
