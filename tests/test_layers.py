"""Default layer choice on the classifier families the issue names."""

from __future__ import annotations

import pytest
import torch
from monai.networks.nets import DenseNet121, EfficientNetBN, ViT
from torch import nn

from medcam_dicom import MedCAM
from medcam_dicom.models.architectures import build_classifier


def _sequential() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 2),
    )


@pytest.mark.parametrize(
    ("factory", "spatial"),
    [
        (lambda: DenseNet121(spatial_dims=2, in_channels=1, out_channels=2), (64, 64)),
        (lambda: build_classifier("resnet18-small", 2, 1, 2), (64, 64)),
        (lambda: build_classifier("resnet18-small", 3, 1, 2), (16, 32, 32)),
        (lambda: EfficientNetBN("efficientnet-b0", pretrained=False, spatial_dims=2, in_channels=1,
                                num_classes=2), (64, 64)),
        (_sequential, (32, 32)),
    ],
)
def test_cnn_default_layers_are_stage_ends_at_decreasing_resolution(factory, spatial):
    torch.manual_seed(0)
    classifier = factory()
    image = torch.rand((1, *spatial))
    layers = MedCAM(classifier).matched_layers(image)
    assert 1 <= len(layers) <= 4
    assert all(layer.kind == "spatial" for layer in layers)
    modules = dict(classifier.named_modules())
    shapes = []
    for layer in layers:
        out = {}

        def record(_module, _inputs, output, out=out):
            out.setdefault("o", output)

        handle = modules[layer.name].register_forward_hook(record)
        with torch.no_grad():
            classifier.eval()(image.unsqueeze(0))
        handle.remove()
        shapes.append(tuple(out["o"].shape[2:]))
    sizes = [int(torch.tensor(s).prod()) for s in shapes]
    assert sizes == sorted(sizes, reverse=True) and len(set(sizes)) == len(sizes)


def test_resnet_defaults_are_its_four_stages():
    classifier = build_classifier("resnet18-small", 2, 1, 2)
    names = [layer.name for layer in MedCAM(classifier).matched_layers(torch.rand(1, 64, 64))]
    assert names == ["layer1", "layer2", "layer3", "layer4"]


def test_vit_defaults_are_evenly_spaced_blocks_ending_at_the_last():
    vit = ViT(in_channels=1, img_size=32, patch_size=8, hidden_size=32, mlp_dim=64, num_layers=8,
              num_heads=4, classification=True, num_classes=2, spatial_dims=2)
    names = [layer.name for layer in MedCAM(vit).matched_layers(torch.rand(1, 32, 32))]
    assert len(names) == 4 and names[-1] == "norm"
    assert all(n.startswith("blocks.") for n in names[:-1])


def test_a_vit_with_a_convolutional_stem_matches_its_transformer_blocks_and_grad_cam_takes_its_stem():
    from medcam_dicom.explain.comparison import GradCAMSaliency

    torch.manual_seed(0)
    # the zoo's hybrid: as many stem stages (4) as token layers, but the tokens come after them
    vit = build_classifier("vit-convstem-small", 2, 1, 2, (64, 64)).eval()
    layers = MedCAM(vit).matched_layers(torch.rand(1, 64, 64))
    assert all(layer.kind == "token" for layer in layers) and layers[-1].name == "norm"
    assert all(layer.name.startswith("blocks.") for layer in layers[:-1])
    assert vit(torch.rand(2, 1, 64, 64))[0].shape == (2, 2)  # MONAI's ViT: (logits, hidden states)
    # Grad-CAM (MONAI's, which indexes the output as logits) on the stem that makes the 4 x 4 token grid
    cam = GradCAMSaliency(vit)
    saliency = cam.saliency(torch.rand(1, 64, 64), 1)
    assert saliency.shape == (64, 64) and float(saliency.max()) == pytest.approx(1.0)
    assert cam._chosen[(1, 64, 64)] == "patch_embedding.patch_embeddings"
    with pytest.raises(ValueError, match="multiple of 16"):
        build_classifier("vit-convstem-small", 2, 1, 2, (64, 40))


def test_user_layers_are_kept_in_the_given_order():
    classifier = build_classifier("resnet18-small", 2, 1, 2)
    layers = MedCAM(classifier, layers=["layer3", "layer1"]).matched_layers(torch.rand(1, 64, 64))
    assert [layer.name for layer in layers] == ["layer3", "layer1"]
