"""Classifier architectures used by the demo models and the benchmark (MONAI networks)."""

from __future__ import annotations

from monai.networks.nets import ResNet
from monai.networks.nets.resnet import ResNetBlock
from torch import nn

ARCHITECTURES = {
    # ResNet-18 layout (2-2-2-2 basic blocks, stride-2 stem): the size the timing target names
    "resnet18": (64, 128, 256, 512),
    # the same layout at a quarter of the width: the demo checkpoints (small enough to ship)
    "resnet18-small": (16, 32, 64, 128),
}


def build_classifier(arch: str, spatial_dims: int, in_channels: int, num_classes: int) -> nn.Module:
    """A MONAI ResNet classifier returning logits ``(B, num_classes)``."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown classifier architecture {arch!r}; expected one of {sorted(ARCHITECTURES)}")
    return ResNet(
        block=ResNetBlock,
        layers=[2, 2, 2, 2],
        block_inplanes=list(ARCHITECTURES[arch]),
        spatial_dims=spatial_dims,
        n_input_channels=in_channels,
        conv1_t_stride=2,
        num_classes=num_classes,
    )
