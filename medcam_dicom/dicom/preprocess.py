"""Per-model preprocessing with MONAI transforms, and its inverse for masks.

``prepare`` turns decoded pixels ``(*spatial, channels)`` into the classifier's input ``(C, *size)``:
channel conversion (RGB to luminance or grey to RGB), intensity scaling to [0, 1] (a window, a value
range or percentiles), optional resampling to a target spacing, resizing (or pad/crop after resampling)
to the model size, and the classifier's own mean/std normalisation. ``mask_to_source`` returns a mask
on the model grid to the source pixel grid with nearest-neighbour steps only, so every source voxel
takes the value of the model voxel it was resampled into.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import (
    NormalizeIntensity,
    Resize,
    ResizeWithPadOrCrop,
    ScaleIntensityRange,
    ScaleIntensityRangePercentiles,
)

from medcam_dicom.models.input_spec import InputSpec

LUMINANCE = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class PreparedImage:
    """The classifier input ``(C, *size)`` and what is needed to invert the spatial steps: the shapes and
    MONAI's record of the pad/crop (``applied_operations``)."""

    tensor: torch.Tensor
    source_shape: tuple[int, ...]
    resampled_shape: tuple[int, ...]
    pad_crop_operations: list = field(default_factory=list)


class Preprocessor:
    """Applies an :class:`InputSpec` to decoded pixels and maps masks back to the source grid."""

    def __init__(self, spec: InputSpec) -> None:
        self.spec = spec
        bounds = spec.intensity.bounds()
        if bounds is None:
            low, high = spec.intensity.percentiles
            self._intensity = ScaleIntensityRangePercentiles(low, high, 0.0, 1.0, clip=True)
        else:
            self._intensity = ScaleIntensityRange(bounds[0], bounds[1], 0.0, 1.0, clip=True)
        self._pad_crop = ResizeWithPadOrCrop(spec.size)
        self._normalise = None
        if spec.mean is not None or spec.std is not None:
            mean = spec.mean or (0.0,) * spec.channels
            std = spec.std or (1.0,) * spec.channels
            self._normalise = NormalizeIntensity(subtrahend=np.array(mean), divisor=np.array(std), channel_wise=True)

    def _resampled_shape(self, source_shape: tuple[int, ...], spacing: tuple[float, ...] | None) -> tuple[int, ...]:
        if self.spec.spacing is None or spacing is None or len(spacing) != len(source_shape):
            return tuple(self.spec.size)
        return tuple(max(1, round(n * s / t)) for n, s, t in zip(source_shape, spacing, self.spec.spacing))

    def prepare(self, pixels: np.ndarray, spacing: tuple[float, ...] | None = None) -> PreparedImage:
        """``pixels`` ``(*spatial, channels)`` (grey-scale in modality units, colour RGB in [0, 255])."""
        spatial = tuple(pixels.shape[:-1])
        if len(spatial) != self.spec.spatial_dims:
            raise ValueError(f"the model takes {self.spec.spatial_dims}D input, got a {len(spatial)}D image")
        image = torch.as_tensor(np.moveaxis(pixels, -1, 0).astype(np.float32))
        if image.shape[0] == 3 and self.spec.channels == 1:
            weights = torch.tensor(LUMINANCE).view((3,) + (1,) * len(spatial))
            image = (image * weights).sum(0, keepdim=True)
        elif image.shape[0] == 1 and self.spec.channels == 3:
            image = image.repeat((3,) + (1,) * len(spatial))
        image = torch.as_tensor(self._intensity(image), dtype=torch.float32)
        resampled = self._resampled_shape(spatial, spacing)
        if any(target < source for target, source in zip(resampled, spatial)):
            mode = "area"  # exact box averaging when shrinking: no aliasing, no border artefacts
        else:
            mode = "bilinear" if len(spatial) == 2 else "trilinear"
        image = torch.as_tensor(Resize(resampled, mode=mode)(image))
        operations: list = []
        if resampled != tuple(self.spec.size):
            padded = self._pad_crop(MetaTensor(image))
            operations = copy.deepcopy(padded.applied_operations)
            image = padded.as_tensor()
        if self._normalise is not None:
            image = torch.as_tensor(self._normalise(image))
        return PreparedImage(image.float().contiguous(), spatial, resampled, operations)

    def mask_to_source(self, mask: torch.Tensor, prepared: PreparedImage, soft: bool = False) -> np.ndarray:
        """A mask on the model grid ``(*size)`` back on the source grid ``(*source_shape)``: MONAI's inverse
        of the pad/crop, then a nearest-exact resize to the source shape (each source pixel takes the value
        of the model pixel it was resampled into). Bool, or the float32 values themselves when ``soft``."""
        values = mask.detach().to("cpu", torch.float32)[None]
        if prepared.pad_crop_operations:
            tracked = MetaTensor(values, applied_operations=copy.deepcopy(prepared.pad_crop_operations))
            values = torch.as_tensor(self._pad_crop.inverse(tracked))
        values = torch.as_tensor(Resize(prepared.source_shape, mode="nearest-exact")(values))[0]
        return np.asarray(values, dtype=np.float32) if soft else np.asarray(values > 0.5)
