"""Per-model preprocessing and its exact inverse for masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medcam_dicom.dicom.preprocess import Preprocessor
from medcam_dicom.models.input_spec import InputSpec, IntensitySpec


def _mask(shape, seed=0):
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed)) > 0.6


def test_window_maps_to_unit_range_then_normalises():
    spec = InputSpec(size=(32, 32), intensity=IntensitySpec(window=(40, 400)), mean=(0.5,), std=(0.25,))
    pixels = np.full((64, 64, 1), 240.0, dtype=np.float32)  # = upper end of the window
    pixels[:32] = -1000.0  # air: below the window
    prepared = Preprocessor(spec).prepare(pixels)
    assert prepared.tensor.shape == (1, 32, 32)
    assert torch.allclose(prepared.tensor[0, :12], torch.tensor(-2.0))  # (0 - 0.5) / 0.25
    assert torch.allclose(prepared.tensor[0, -12:], torch.tensor(2.0))  # (1 - 0.5) / 0.25


def test_rgb_becomes_luminance_and_grey_becomes_three_channels():
    rgb = np.zeros((16, 16, 3), np.float32)
    rgb[..., 1] = 255.0
    grey = Preprocessor(InputSpec(size=(16, 16), intensity=IntensitySpec(range=(0, 255)))).prepare(rgb)
    assert torch.allclose(grey.tensor, torch.tensor(0.587), atol=1e-4)
    three = Preprocessor(InputSpec(size=(16, 16), channels=3, intensity=IntensitySpec(range=(0, 255))))
    assert three.prepare(np.full((16, 16, 1), 255.0, np.float32)).tensor.shape == (3, 16, 16)


def test_integer_factor_inverse_is_block_replication():
    spec = InputSpec(size=(64, 64))
    preprocessor = Preprocessor(spec)
    prepared = preprocessor.prepare(np.random.default_rng(0).normal(size=(128, 128, 1)).astype(np.float32))
    mask = _mask((64, 64))
    back = preprocessor.mask_to_source(mask, prepared)
    assert back.shape == (128, 128) and back.dtype == bool
    assert np.array_equal(back, np.kron(mask.numpy(), np.ones((2, 2), bool)))


@pytest.mark.parametrize("source", [(100, 140), (300, 77), (20, 24, 30)])
def test_inverse_gives_every_source_voxel_the_model_voxel_it_fell_into(source):
    size = (32, 32) if len(source) == 2 else (16, 16, 16)
    preprocessor = Preprocessor(InputSpec(size=size))
    prepared = preprocessor.prepare(np.ones(source + (1,), np.float32))
    mask = _mask(size, seed=1)
    back = preprocessor.mask_to_source(mask, prepared)
    assert back.shape == source
    # nearest-exact: source index i maps to model index floor((i + 0.5) * size / source)
    index = np.ix_(*[np.minimum(((np.arange(n) + 0.5) * m / n).astype(int), m - 1) for n, m in zip(source, size)])
    assert np.array_equal(back, mask.numpy()[index])
    # and back again: the model mask is recovered wherever the grid maps one to one
    assert back.mean() == pytest.approx(float(mask.float().mean()), abs=0.05)


def test_spacing_resamples_then_pads_and_the_inverse_undoes_both():
    spec = InputSpec(size=(64, 64), spacing=(1.0, 1.0))
    preprocessor = Preprocessor(spec)
    pixels = np.ones((40, 50, 1), np.float32)
    prepared = preprocessor.prepare(pixels, spacing=(1.0, 0.5))  # 40 x 25 mm at 1 mm = 40 x 25, padded
    assert prepared.resampled_shape == (40, 25)
    assert prepared.tensor.shape == (1, 64, 64)
    mask = torch.zeros(64, 64, dtype=torch.bool)
    mask[12:52, 19:44] = True  # exactly the image inside the padding
    back = preprocessor.mask_to_source(mask, prepared)
    assert back.shape == (40, 50) and back.all()


@pytest.mark.parametrize("kwargs, message", [
    ({"size": (4, 4)}, "at least 8"), ({"size": (32, 32), "channels": 2}, "channels must be 1 or 3"),
    ({"size": (32, 32), "mean": (0.1, 0.2)}, "mean needs 1 entries"),
    ({"size": (32, 32), "spacing": (1.0,)}, "spacing must have 2"),
])
def test_input_spec_validation_names_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message):
        InputSpec(**kwargs)


def test_intensity_needs_exactly_one_mapping():
    with pytest.raises(ValueError, match="exactly one of window, range, percentiles"):
        IntensitySpec(window=(0, 1), range=(0, 1))
    with pytest.raises(ValueError, match="width must be > 0"):
        IntensitySpec(window=(0, 0))
