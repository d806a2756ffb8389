"""Small, fully known classifiers and images shared by the tests."""

from __future__ import annotations

import pytest
import torch
from monai.networks.layers import Conv, Pool
from torch import nn

from medcam_dicom import MedCAMConfig


class BlobDetector(nn.Module):
    """A hand-set CNN whose class-1 logit rises with the brightest blurred spot of channel 0.

    Class 1 iff some 5-pixel neighbourhood has mean intensity above ``threshold``: the decision depends
    on the bright blob only, so the blob is the ground-truth evidence.
    """

    def __init__(self, spatial_dims: int = 2, in_channels: int = 1, threshold: float = 0.5) -> None:
        super().__init__()
        conv, pool = Conv[Conv.CONV, spatial_dims], Pool[Pool.MAX, spatial_dims]
        generator = torch.Generator().manual_seed(0)
        self.conv1 = conv(in_channels, 4, 5, padding=2)
        self.act1 = nn.ReLU()
        self.pool1 = pool(2)
        self.conv2 = conv(4, 8, 3, padding=1)
        self.act2 = nn.ReLU()
        self.pool2 = pool(2)
        self.threshold = threshold
        with torch.no_grad():
            for layer in (self.conv1, self.conv2):
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator) * 0.1)
                layer.bias.zero_()
            self.conv1.weight[0].zero_()
            self.conv1.weight[0, 0].fill_(1.0 / 5**spatial_dims)  # channel 0: local mean of the image
            self.conv2.weight[0].zero_()
            self.conv2.weight[(0, 0) + (1,) * spatial_dims] = 1.0  # channel 0 passes it on

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.pool2(self.act2(self.conv2(self.pool1(self.act1(self.conv1(x))))))
        score = features[:, 0].flatten(1).max(dim=1).values
        evidence = 20.0 * (score - self.threshold)
        return torch.stack([-evidence, evidence], dim=1)


class LooksAtCorner(nn.Module):
    """Class 1 iff the top-left quarter is bright on average; ignores everything else."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.act(self.conv(x))
        h, w = x.shape[-2] // 2, x.shape[-1] // 2
        corner = x[:, 0, :h, :w].mean(dim=(1, 2)) + 0.0 * features.mean(dim=(1, 2, 3))
        return torch.stack([0.5 - corner, corner - 0.5], dim=1) * 10.0


class IgnoresInput(nn.Module):
    """Always class 0, whatever the image: any mask is faithful."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.act(self.conv(x))
        zero = 0.0 * features.mean(dim=(1, 2, 3))
        return torch.stack([zero + 3.0, zero - 3.0], dim=1)


def blob_image(size: int = 32, centre: tuple[int, ...] = (10, 20), radius: float = 4.0) -> tuple[
    torch.Tensor, torch.Tensor
]:
    """A dark noisy image ``(1, *spatial)`` with one bright disk/sphere; returns (image, disk mask)."""
    spatial = (size,) * len(centre)
    grids = torch.meshgrid(*[torch.arange(s, dtype=torch.float32) for s in spatial], indexing="ij")
    distance = sum((g - c) ** 2 for g, c in zip(grids, centre)).sqrt()
    disk = distance <= radius
    generator = torch.Generator().manual_seed(1)
    image = 0.05 * torch.rand(spatial, generator=generator) + disk.float()
    return image.unsqueeze(0), disk


@pytest.fixture(autouse=True)
def _seeded_torch() -> None:
    """Seed torch's global generator before every test, so that a layer a test builds with default
    initialisation gets the same weights whatever ran before it in the process (CI's test order and
    a single test run alone must see the same model)."""
    torch.manual_seed(0)


@pytest.fixture
def fast_config() -> MedCAMConfig:
    """A short schedule for tests: few steps, small U-Net."""
    return MedCAMConfig(max_steps=60, min_steps=10, unet_channels=(8, 16), unet_strides=(2,))


@pytest.fixture(scope="session")
def device() -> torch.device:
    """Where the tests marked ``device`` run: ``MEDCAM_TEST_DEVICE`` (``scripts/device_check.py`` sets
    ``cuda``), else the CPU. Asking for CUDA where there is none is an error, never a silent CPU run."""
    import os

    name = os.environ.get("MEDCAM_TEST_DEVICE", "cpu")
    chosen = torch.device(name)
    if chosen.type == "cuda" and not torch.cuda.is_available():
        pytest.fail(f"MEDCAM_TEST_DEVICE={name}, but torch sees no CUDA device")
    return chosen
