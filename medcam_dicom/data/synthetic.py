"""Ground-truth benchmark data, generated offline: synthetic lesions on real anatomy backgrounds.

Every image shows a real background (CT and MR slices from pydicom's bundled test files, the fundus and
immunohistochemistry images that scikit-image ships; for the zoo-only ``abdomen`` set an abdominal MR from
pydicom's files) under a random crop, flip, rotation and intensity jitter, plus 1-3 **distractors**
(elongated streaks and small squares of the lesion's colour) in both classes. Class 1 ("lesion") images also
carry one round target lesion (concentric rings); the class is decided by the lesion only, so the lesion is
the ground-truth evidence of a class-1 decision. The 3D variant puts a spherical lesion into a volume built
from a CT slice.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cache

import numpy as np
import pydicom
import torch
from pydicom.data import get_testdata_file
from scipy import ndimage

from medcam_dicom.data.names import GENERATED_DATASETS, VARIANTS

CLASS_NAMES = ("normal", "lesion")


@dataclass
class GroundTruthSet:
    """Images ``(N, C, *spatial)`` in [0, 1], labels ``(N,)``, lesion masks ``(N, *spatial)`` (bool,
    empty for class 0), and the dataset's name."""

    name: str
    images: torch.Tensor
    labels: torch.Tensor
    lesions: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass(frozen=True)
class DatasetSpec:
    """Shape and appearance of one benchmark dataset."""

    name: str
    spatial_shape: tuple[int, ...]
    channels: int
    lesion_radius: tuple[float, float]
    lesion_colour: tuple[float, ...]
    distractors: tuple[int, int] = (1, 3)


SPECS = {
    "ct": DatasetSpec("ct", (128, 128), 1, (10.0, 15.0), (0.45,)),
    "mr": DatasetSpec("mr", (128, 128), 1, (10.0, 15.0), (0.45,)),
    "fundus": DatasetSpec("fundus", (128, 128), 3, (10.0, 15.0), (0.40, 0.35, -0.15)),
    "histology": DatasetSpec("histology", (128, 128), 3, (10.0, 15.0), (-0.30, 0.25, 0.30)),
    "ct3d": DatasetSpec("ct3d", (32, 64, 64), 1, (6.0, 9.0), (0.45,)),
    "abdomen": DatasetSpec("abdomen", (128, 128), 1, (10.0, 15.0), (0.45,)),
}


def _normalise(array: np.ndarray) -> np.ndarray:
    low, high = np.percentile(array, [1, 99])
    return np.clip((array - low) / max(high - low, 1e-6), 0.0, 1.0).astype(np.float32)


def _dicom_slice(filename: str) -> np.ndarray:
    path = get_testdata_file(filename)
    if path is None:
        raise RuntimeError(f"pydicom's bundled test file {filename} is missing from this installation")
    dataset = pydicom.dcmread(path)
    pixels = dataset.pixel_array.astype(np.float32)
    pixels = pixels * float(dataset.get("RescaleSlope", 1)) + float(dataset.get("RescaleIntercept", 0))
    return pixels


@cache
def anatomy_backgrounds(name: str) -> tuple[np.ndarray, ...]:
    """The real images a dataset draws its backgrounds from, each ``(C, H, W)`` in [0, 1]."""
    from skimage import data as skdata

    if name in ("ct", "ct3d"):
        slices = [_dicom_slice("CT_small.dcm"), _dicom_slice("693_J2KI.dcm")]
        # soft-tissue window, the way a radiologist would look at these slices
        return tuple(np.clip((s + 160.0) / 400.0, 0, 1).astype(np.float32)[None] for s in slices)
    if name == "mr":
        return (_normalise(_dicom_slice("MR_small.dcm"))[None],)
    if name == "abdomen":  # an axial contrast-enhanced MR of the upper abdomen (liver, kidneys, spine)
        return (_normalise(_dicom_slice("examples_overlay.dcm"))[None],)
    if name == "fundus":
        return (np.moveaxis(skdata.retina().astype(np.float32) / 255.0, -1, 0),)
    if name == "histology":
        return (np.moveaxis(skdata.immunohistochemistry().astype(np.float32) / 255.0, -1, 0),)
    raise ValueError(f"unknown benchmark dataset {name!r}; expected one of {GENERATED_DATASETS}")


def _random_view(source: np.ndarray, size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A random crop (50-100 % of the shorter side), resized to ``size``, flipped/rotated, jittered."""
    _, height, width = source.shape
    side = int(min(height, width) * rng.uniform(0.5, 1.0))
    top = rng.integers(0, height - side + 1)
    left = rng.integers(0, width - side + 1)
    crop = source[:, top : top + side, left : left + side]
    zoom = (1.0, size[0] / side, size[1] / side)
    view = ndimage.zoom(crop, zoom, order=1)[:, : size[0], : size[1]]
    view = np.rot90(view, k=int(rng.integers(0, 4)), axes=(1, 2))
    if rng.random() < 0.5:
        view = view[:, :, ::-1]
    gain, offset = rng.uniform(0.8, 1.2), rng.uniform(-0.1, 0.1)
    return np.clip(view * gain + offset, 0.0, 1.0).astype(np.float32)


def _grid(shape: tuple[int, ...]) -> list[np.ndarray]:
    return list(np.meshgrid(*[np.arange(s, dtype=np.float32) for s in shape], indexing="ij"))


def _paint(image: np.ndarray, weight: np.ndarray, colour: tuple[float, ...]) -> None:
    for channel, value in enumerate(colour):
        image[channel] = np.clip(image[channel] + weight * value, 0.0, 1.0)


def _add_distractors(
    image: np.ndarray, spec: DatasetSpec, rng: np.random.Generator, avoid: np.ndarray | None
) -> None:
    """Streaks (elongated ellipses) and small squares with the lesion's colour, away from the lesion."""
    shape = image.shape[1:]
    grid = _grid(shape)
    for _ in range(int(rng.integers(spec.distractors[0], spec.distractors[1] + 1))):
        for _attempt in range(20):
            centre = [rng.uniform(0.15 * s, 0.85 * s) for s in shape]
            if rng.random() < 0.5:
                angle = rng.uniform(0, np.pi)
                length = rng.uniform(1.6, 2.6) * spec.lesion_radius[1]
                width = rng.uniform(1.0, 1.8) * spec.lesion_radius[1] / 12.0
                along = (grid[-1] - centre[-1]) * np.cos(angle) + (grid[-2] - centre[-2]) * np.sin(angle)
                across = -(grid[-1] - centre[-1]) * np.sin(angle) + (grid[-2] - centre[-2]) * np.cos(angle)
                inside = (along / length) ** 2 + (across / width) ** 2
                if len(shape) == 3:
                    inside = inside + ((grid[0] - centre[0]) / width) ** 2
                weight = np.clip((1.0 - inside) * 3.0, 0.0, 1.0)
            else:
                half = rng.uniform(0.2, 0.3) * spec.lesion_radius[1]
                distance = np.max([np.abs(g - c) for g, c in zip(grid, centre)], axis=0)
                weight = np.clip(half - distance + 0.5, 0.0, 1.0)
            if (avoid is None or not np.any((weight > 0) & avoid)) and _visible(
                image, weight > 0.5, spec.lesion_colour
            ):
                _paint(image, weight, spec.lesion_colour)
                break


def _visible(image: np.ndarray, region: np.ndarray, colour: tuple[float, ...]) -> bool:
    """Whether painting ``colour`` over ``region`` stays inside [0, 1] (clipping would hide it)."""
    for channel, value in enumerate(colour):
        mean = float(image[channel][region].mean())
        if not 0.05 <= mean + value <= 0.95:
            return False
    return True


def _lesion(
    image: np.ndarray, spec: DatasetSpec, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A round target lesion placed where it stays visible: (intensity weight with a soft edge and
    concentric rings inside, ground-truth mask)."""
    shape = spec.spatial_shape
    radius = rng.uniform(*spec.lesion_radius)
    margin = radius + 2
    grid = _grid(shape)
    for _attempt in range(50):
        centre = [rng.uniform(margin, s - margin) for s in shape]
        distance = np.sqrt(sum((g - c) ** 2 for g, c in zip(grid, centre)))
        if _visible(image, distance <= radius, spec.lesion_colour):
            break
    # a "target" lesion: concentric rings, a pattern the anatomy backgrounds do not contain
    period = rng.uniform(0.45, 0.55) * radius
    texture = 0.55 + 0.45 * np.cos(2.0 * np.pi * distance / period)
    weight = np.clip(radius - distance + 0.5, 0.0, 1.0) * texture
    return weight.astype(np.float32), distance <= radius


def _background(spec: DatasetSpec, rng: np.random.Generator) -> np.ndarray:
    sources = anatomy_backgrounds(spec.name)
    source = sources[int(rng.integers(0, len(sources)))]
    if len(spec.spatial_shape) == 2:
        return _random_view(source, spec.spatial_shape, rng)
    depth, height, width = spec.spatial_shape
    view = _random_view(source, (height, width), rng)[0]
    # a volume whose anatomy changes smoothly from slice to slice: zoom varies along the axis
    slices = []
    for z in range(depth):
        factor = 1.0 + 0.25 * np.sin(np.pi * z / depth)
        zoomed = ndimage.zoom(view, factor, order=1)
        top = (zoomed.shape[0] - height) // 2
        left = (zoomed.shape[1] - width) // 2
        slices.append(zoomed[top : top + height, left : left + width])
    return np.stack(slices)[None].astype(np.float32)


def variant_spec(name: str, variant: str = "standard") -> DatasetSpec:
    """The spec of dataset ``name`` in a ``variant``: ``standard`` (what classifiers and explainers are
    trained on) or ``heldout``: lesions a third smaller and 2-4 distractors instead of 1-3, a shift that
    neither the classifier nor the amortised explainer saw in training."""
    if name not in SPECS:
        raise ValueError(f"unknown benchmark dataset {name!r}; expected one of {GENERATED_DATASETS}")
    if variant not in VARIANTS:
        raise ValueError(f"unknown dataset variant {variant!r}; expected one of {VARIANTS}")
    spec = SPECS[name]
    if variant == "heldout":
        low, high = spec.lesion_radius
        spec = replace(spec, lesion_radius=(low * 2 / 3, high * 2 / 3), distractors=(2, 4))
    return spec


def generate(name: str, count: int, seed: int = 0, variant: str = "standard") -> GroundTruthSet:
    """``count`` images of dataset ``name`` (in ``variant``, see :func:`variant_spec`), alternating
    classes 0 and 1, reproducible from ``seed``."""
    spec = variant_spec(name, variant)
    rng = np.random.default_rng([seed, GENERATED_DATASETS.index(name)])
    images, labels, lesions = [], [], []
    for index in range(count):
        label = index % 2
        image = _background(spec, rng)
        lesion = np.zeros(spec.spatial_shape, dtype=bool)
        if label == 1:
            weight, lesion = _lesion(image, spec, rng)
            _paint(image, weight, spec.lesion_colour)
        _add_distractors(image, spec, rng, lesion if label == 1 else None)
        images.append(image)
        labels.append(label)
        lesions.append(lesion)
    return GroundTruthSet(
        name=name,
        images=torch.from_numpy(np.stack(images)),
        labels=torch.tensor(labels, dtype=torch.long),
        lesions=torch.from_numpy(np.stack(lesions)),
    )
