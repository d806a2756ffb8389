"""Bad input gets a ValueError that names the problem."""

from __future__ import annotations

import pytest
import torch
from conftest import BlobDetector, blob_image
from torch import nn

from medcam_dicom import LossWeights, MedCAM, MedCAMConfig


class ReturnsVector(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).mean(dim=(1, 2, 3))  # (B,), not (B, K)


class ReturnsMaps(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)  # (B, K, H, W)


@pytest.fixture
def explainer(fast_config):
    return MedCAM(BlobDetector(), config=fast_config)


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (torch.zeros(32, 32), "dimensions"),
        (torch.zeros(1, 1, 1, 8, 8, 8), "dimensions"),
        (torch.zeros(1, 0, 32), "empty axis"),
        (torch.full((1, 32, 32), float("nan")), "NaN"),
        (torch.tensor([[[float("inf")] * 32] * 32]), "NaN or infinite"),
        (torch.zeros(3, 32, 32), "3 channel"),
        ("not an image", "torch.Tensor or numpy"),
    ],
)
def test_bad_images_are_rejected_with_a_named_problem(explainer, image, message):
    with pytest.raises(ValueError, match=message):
        explainer.explain(image)


def test_numpy_images_are_accepted(explainer):
    image, _ = blob_image()
    assert explainer.explain(image.numpy()).mask.shape == (32, 32)


@pytest.mark.parametrize("classifier", [ReturnsVector(), ReturnsMaps()])
def test_classifier_that_does_not_return_logits_is_rejected(classifier, fast_config):
    image, _ = blob_image()
    with pytest.raises(ValueError, match=r"logits of shape \(B, K\)"):
        MedCAM(classifier, layers=["conv"], config=fast_config).explain(image)


def test_classifier_that_fails_on_the_image_is_reported():
    class NeedsSixtyFour(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3, padding=1)
            self.fc = nn.Linear(2 * 64 * 64, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.conv(x).flatten(1))

    image, _ = blob_image()
    with pytest.raises(ValueError, match="classifier failed on an input of shape"):
        MedCAM(NeedsSixtyFour(), layers=["conv"]).explain(image)


def test_unknown_layer_name_is_rejected_with_suggestions():
    with pytest.raises(ValueError, match=r"unknown layer name 'conv3'.*did you mean"):
        MedCAM(BlobDetector(), layers=["conv1", "conv3"])


def test_layer_without_matchable_output_is_rejected(fast_config):
    class Flat(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(32 * 32, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x.flatten(1))

    image, _ = blob_image()
    with pytest.raises(ValueError, match="neither a spatial map"):
        MedCAM(Flat(), layers=["fc"], config=fast_config).explain(image)
    with pytest.raises(ValueError, match="could not choose layers"):
        MedCAM(Flat(), config=fast_config).explain(image)


@pytest.mark.parametrize("target", [2, -1, 1.5, "1", True])
def test_target_out_of_range_or_wrong_type_is_rejected(explainer, target):
    image, _ = blob_image()
    with pytest.raises(ValueError, match="target"):
        explainer.explain(image, target=target)


def test_not_a_module_is_rejected():
    with pytest.raises(ValueError, match="torch.nn.Module"):
        MedCAM(lambda x: x)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"baseline": "grey"}, "baseline"),
        ({"robustness_backgrounds": ("pink",)}, "robustness_backgrounds"),
        ({"max_steps": 0}, "max_steps"),
        ({"min_steps": 10, "max_steps": 5}, "min_steps"),
        ({"threshold": 1.0}, "threshold"),
        ({"unet_channels": (8, 16), "unet_strides": (2, 2)}, "unet_strides"),
        ({"area_gate": 2.0}, "area_gate"),
        ({"warm_start": "lime"}, "warm_start"),
        ({"warm_start_levels": (0.5, 0.1)}, "warm_start_levels"),
        ({"warm_start_levels": (0.1, 1.5)}, "warm_start_levels"),
        ({"warm_start_logits": (-1.0, 1.0)}, "warm_start_logits"),
        ({"area_relative_tolerance": -0.1}, "area_relative_tolerance"),
        ({"max_converged_area": 0.0}, "max_converged_area"),
        ({"decided_tolerance": 0.0}, "decided_tolerance"),
    ],
)
def test_invalid_configuration_names_the_setting(settings, message):
    with pytest.raises(ValueError, match=message):
        MedCAMConfig(**settings)


def test_negative_loss_weight_is_rejected():
    with pytest.raises(ValueError, match="LossWeights.area"):
        LossWeights(area=-1.0)


def test_unknown_configuration_key_is_rejected():
    with pytest.raises(ValueError, match="unknown setting"):
        MedCAMConfig.from_dict({"stepz": 3})
