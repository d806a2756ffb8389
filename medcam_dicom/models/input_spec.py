"""What a classifier expects as input (size, channels, intensity mapping, spacing, normalisation): part of a
model description, applied by :mod:`medcam_dicom.dicom.preprocess`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class IntensitySpec:
    """How modality values map to [0, 1]: exactly one of a window ``(center, width)``, a value range
    ``(low, high)``, or percentiles ``(lower, upper)`` of the image itself."""

    window: tuple[float, float] | None = None
    range: tuple[float, float] | None = None
    percentiles: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        given = [name for name in ("window", "range", "percentiles") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"intensity needs exactly one of window, range, percentiles; got {given or 'none'}")
        if len(getattr(self, given[0])) != 2:
            raise ValueError(f"intensity {given[0]} needs two numbers, got {getattr(self, given[0])}")
        if self.window is not None and not self.window[1] > 0:
            raise ValueError(f"intensity window width must be > 0, got {self.window[1]}")
        if self.range is not None and not self.range[1] > self.range[0]:
            raise ValueError(f"intensity range must be increasing, got {self.range}")
        if self.percentiles is not None and not 0 <= self.percentiles[0] < self.percentiles[1] <= 100:
            raise ValueError(f"intensity percentiles must satisfy 0 <= lower < upper <= 100, got {self.percentiles}")

    def bounds(self) -> tuple[float, float] | None:
        """``(low, high)`` in modality units for window/range, ``None`` for percentiles."""
        if self.window is not None:
            center, width = self.window
            return center - width / 2.0, center + width / 2.0
        return self.range


@dataclass(frozen=True)
class InputSpec:
    """What a classifier expects: spatial ``size`` (2 or 3 entries), ``channels``, intensity mapping,
    optional target ``spacing`` in mm (resample, then pad/crop to ``size``) and per-channel normalisation
    applied after the [0, 1] scaling."""

    size: tuple[int, ...]
    channels: int = 1
    intensity: IntensitySpec = IntensitySpec(percentiles=(1.0, 99.0))
    spacing: tuple[float, ...] | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if len(self.size) not in (2, 3) or any(int(s) < 8 for s in self.size):
            raise ValueError(f"input size must have 2 or 3 entries of at least 8, got {self.size}")
        if self.channels not in (1, 3):
            raise ValueError(f"input channels must be 1 or 3, got {self.channels}")
        if self.spacing is not None and (len(self.spacing) != len(self.size) or min(self.spacing) <= 0):
            raise ValueError(f"input spacing must have {len(self.size)} positive entries, got {self.spacing}")
        for name in ("mean", "std"):
            value = getattr(self, name)
            if value is not None and len(value) != self.channels:
                raise ValueError(f"input {name} needs {self.channels} entries, got {value}")
        if self.std is not None and min(self.std) <= 0:
            raise ValueError(f"input std must be positive, got {self.std}")

    @property
    def spatial_dims(self) -> int:
        return len(self.size)
