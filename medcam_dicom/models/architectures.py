"""Classifier architectures used by the demo models and the benchmark's classifier zoo (MONAI networks).

Every builder returns a network mapping ``(B, C, *spatial)`` to logits ``(B, num_classes)`` (MONAI's ViT
returns ``(logits, hidden_states)``; the explainers take the first element). The ``-small`` variants keep
a published layout at reduced width, so that the zoo trains on two CPU cores in minutes and its
checkpoints stay small enough to keep in the repository.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from monai.networks.blocks import Convolution
from monai.networks.nets import DenseNet, ResNet, ViT
from monai.networks.nets.resnet import ResNetBlock
from torch import nn

Builder = Callable[[int, int, int, Sequence[int] | None], nn.Module]


def _resnet18(widths: tuple[int, ...]) -> Builder:
    def build(spatial_dims: int, in_channels: int, num_classes: int, spatial_shape: Sequence[int] | None) -> nn.Module:
        return ResNet(
            block=ResNetBlock,
            layers=[2, 2, 2, 2],
            block_inplanes=list(widths),
            spatial_dims=spatial_dims,
            n_input_channels=in_channels,
            conv1_t_stride=2,
            num_classes=num_classes,
        )

    return build


def _densenet121(init_features: int, growth_rate: int) -> Builder:
    def build(spatial_dims: int, in_channels: int, num_classes: int, spatial_shape: Sequence[int] | None) -> nn.Module:
        return DenseNet(
            spatial_dims=spatial_dims,
            in_channels=in_channels,
            out_channels=num_classes,
            init_features=init_features,
            growth_rate=growth_rate,
            block_config=(6, 12, 24, 16),  # DenseNet-121's blocks
        )

    return build


def _small_cnn(spatial_dims: int, in_channels: int, num_classes: int, spatial_shape: Sequence[int] | None) -> nn.Module:
    layers: list[nn.Module] = []
    channels = in_channels
    for width in (16, 32, 64, 128):
        layers.append(Convolution(spatial_dims, channels, width, strides=1, act="relu", norm="batch"))
        layers.append(Convolution(spatial_dims, width, width, strides=2, act="relu", norm="batch"))
        channels = width
    pool = nn.AdaptiveAvgPool2d(1) if spatial_dims == 2 else nn.AdaptiveAvgPool3d(1)
    return nn.Sequential(*layers, pool, nn.Flatten(), nn.Linear(channels, num_classes))


def _vit_small(spatial_dims: int, in_channels: int, num_classes: int, spatial_shape: Sequence[int] | None) -> nn.Module:
    if spatial_shape is None:
        raise ValueError("architecture 'vit-small' needs the input's spatial shape (its patch grid is fixed)")
    return ViT(
        in_channels=in_channels,
        img_size=tuple(spatial_shape),
        patch_size=tuple(min(16, s) for s in spatial_shape),
        hidden_size=128,
        mlp_dim=512,
        num_layers=4,
        num_heads=4,
        classification=True,
        num_classes=num_classes,
        spatial_dims=spatial_dims,
        post_activation="",  # logits, as every other classifier here (MONAI's default is Tanh)
    )


def _vit_convstem_small(
    spatial_dims: int, in_channels: int, num_classes: int, spatial_shape: Sequence[int] | None
) -> nn.Module:
    """:func:`_vit_small` with a convolutional stem in place of its patch projection (Xiao et al. 2021,
    "Early convolutions help transformers see better"): three stride-2 3x3 convolutions (32, 64, 128
    channels; batch norm, ReLU) and a stride-2 1x1 projection to the token width make the same 16-px
    token grid, then MONAI's position embedding, class token and transformer blocks as before. The plain
    ViT does not learn the zoo's tasks from scratch on this little data; this one does in minutes."""
    if spatial_shape is None or any(side % 16 for side in spatial_shape):
        raise ValueError("architecture 'vit-convstem-small' needs the input's spatial shape, each side a "
                         f"multiple of 16 (its token grid is fixed), got {spatial_shape}")
    vit = _vit_small(spatial_dims, in_channels, num_classes, spatial_shape)
    hidden = vit.patch_embedding.position_embeddings.shape[-1]
    stem: list[nn.Module] = []
    channels, stride = in_channels, 1
    for width in (32, 64, 128):
        stem.append(Convolution(spatial_dims, channels, width, strides=2, kernel_size=3, act="relu", norm="batch"))
        channels, stride = width, stride * 2
    stem.append(Convolution(spatial_dims, channels, hidden, strides=16 // stride, kernel_size=1, conv_only=True))
    # PatchEmbeddingBlock flattens the projection's output to tokens and adds the position embedding
    vit.patch_embedding.patch_embeddings = nn.Sequential(*stem)
    return vit


ARCHITECTURES: dict[str, Builder] = {
    # ResNet-18 layout (2-2-2-2 basic blocks, stride-2 stem): the size the timing targets name
    "resnet18": _resnet18((64, 128, 256, 512)),
    # the same layout at a quarter of the width: the demo checkpoints (small enough to ship)
    "resnet18-small": _resnet18((16, 32, 64, 128)),
    # MONAI's DenseNet121, the network of MONAI's classification tutorials
    "densenet121": _densenet121(64, 32),
    # DenseNet-121's 6-12-24-16 blocks at a quarter of the width (1 M parameters)
    "densenet121-small": _densenet121(16, 12),
    # eight 3x3 convolutions (batch norm, ReLU; every second one stride 2), global average pooling, linear
    "cnn": _small_cnn,
    # MONAI ViT: 16-pixel patches, 4 layers of width 128 (0.8 M parameters)
    "vit-small": _vit_small,
    # the same ViT with a convolutional stem instead of the 16-px patch projection (learns from scratch)
    "vit-convstem-small": _vit_convstem_small,
}


def build_classifier(
    arch: str, spatial_dims: int, in_channels: int, num_classes: int, spatial_shape: Sequence[int] | None = None
) -> nn.Module:
    """A MONAI classifier returning logits ``(B, num_classes)``; ``spatial_shape`` is needed by the
    architectures whose input size is fixed (``vit-small``)."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown classifier architecture {arch!r}; expected one of {sorted(ARCHITECTURES)}")
    if spatial_shape is not None and len(spatial_shape) != spatial_dims:
        raise ValueError(f"spatial_shape {tuple(spatial_shape)} does not have {spatial_dims} dimensions")
    return ARCHITECTURES[arch](spatial_dims, in_channels, num_classes, spatial_shape)
