"""Training the benchmark/demo classifiers on generated ground-truth data (CPU, minutes)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
import torch.nn.functional as F
from monai.networks.layers import GaussianFilter
from torch import nn
from tqdm.auto import tqdm

from medcam_dicom.data.synthetic import CLASS_NAMES, SPECS, generate
from medcam_dicom.explain.amortized import AmortizedMedCAM
from medcam_dicom.explain.config import MedCAMConfig
from medcam_dicom.explain.verification import forward_logits
from medcam_dicom.models.architectures import build_classifier
from medcam_dicom.models.demo import TrainedClassifier

TRAIN_SEED, VALIDATION_SEED, TEST_SEED = 1, 2, 3
#: the amortised explainers train on images the classifier never saw (its training seeds are 1000 + epoch)
EXPLAINER_SEED = 4


def random_blob_masks(shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """Boolean masks ``(N, *spatial)`` of random smooth blobs covering 5-60 % of each image."""
    count, spatial = shape[0], shape[1:]
    coarse = torch.randn((count, 1, *[max(s // 16, 2) for s in spatial]), generator=generator)
    mode = "bilinear" if len(spatial) == 2 else "trilinear"
    field = F.interpolate(coarse, size=spatial, mode=mode, align_corners=False)[:, 0].flatten(1)
    keep = 0.05 + 0.55 * torch.rand(count, generator=generator)
    thresholds = torch.stack([torch.quantile(f, 1.0 - k) for f, k in zip(field, keep)])
    return (field >= thresholds[:, None]).view(count, *spatial)


def masking_augmentation(
    images: torch.Tensor, labels: torch.Tensor, lesions: torch.Tensor, generator: torch.Generator,
    probability: float = 0.5,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Show the classifier masked images while it learns, so that the cut-out edges an explainer's hard
    mask creates are ordinary to it and only the lesion says "lesion".

    Each normalised image is, with ``probability``, replaced outside a random blob mask by zero or by
    its blurred self. The label follows the lesion: kept (>= 70 % of it inside the mask) stays 1,
    removed (<= 10 % inside) becomes 0; in between the image is left unmasked.
    """
    masks = random_blob_masks((images.shape[0], *images.shape[2:]), generator)
    chosen = torch.rand(images.shape[0], generator=generator) < probability
    lesion_voxels = lesions.flatten(1).sum(1).clamp(min=1)
    kept = (masks & lesions).flatten(1).sum(1) / lesion_voxels
    has_lesion = lesions.flatten(1).any(1)
    ambiguous = has_lesion & (kept > 0.1) & (kept < 0.7)
    chosen &= ~ambiguous
    sigma = max(min(images.shape[2:]) / 8.0, 1.0)
    with torch.no_grad():
        blurred = GaussianFilter(images.ndim - 2, sigma)(images)
    use_blur = (torch.rand(images.shape[0], generator=generator) < 0.5).view(-1, *[1] * (images.ndim - 1))
    baseline = torch.where(use_blur, blurred, torch.zeros_like(images))
    keep = masks.unsqueeze(1).to(images.dtype)
    masked = keep * images + (1.0 - keep) * baseline
    view = chosen.view(-1, *[1] * (images.ndim - 1))
    new_labels = torch.where(chosen & has_lesion & (kept <= 0.1), torch.zeros_like(labels), labels)
    return torch.where(view, masked, images), new_labels


def ordinary_augmentation(
    images: torch.Tensor, generator: torch.Generator, max_shift: int = 8, intensity: float = 0.1
) -> torch.Tensor:
    """The augmentation of an ordinary training recipe, per image of a normalised batch ``(B, C, *spatial)``:
    a random flip along each spatial axis, a shift of up to ``max_shift`` voxels per axis (reflection at
    the border) and a contrast/brightness jitter ``x (1 + a) + b`` with ``a, b`` in +-``intensity``."""
    spatial = images.shape[2:]
    out = torch.empty_like(images)
    pad = [max_shift] * (2 * len(spatial))
    padded = F.pad(images, pad, mode="reflect")
    for i in range(images.shape[0]):
        item = padded[i]
        offsets = torch.randint(0, 2 * max_shift + 1, (len(spatial),), generator=generator).tolist()
        item = item[(slice(None), *[slice(o, o + s) for o, s in zip(offsets, spatial)])]
        flips = [axis + 1 for axis in range(len(spatial)) if torch.rand((), generator=generator) < 0.5]
        if flips:
            item = item.flip(flips)
        contrast, brightness = (intensity * (2 * torch.rand(2, generator=generator) - 1)).tolist()
        out[i] = item * (1.0 + contrast) + brightness
    return out


def _accuracy(network: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch: int = 64) -> float:
    network.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(labels), batch):
            logits = forward_logits(network, images[start : start + batch])
            correct += int((logits.argmax(1) == labels[start : start + batch]).sum())
    return correct / len(labels)


def train_classifier(
    dataset: str,
    arch: str = "resnet18-small",
    train_images: int = 1500,
    validation_images: int = 200,
    epochs: int = 10,
    batch_size: int = 32,
    learning_rate: float = 1e-3,
    seed: int = 0,
    masking: float = 0.5,
    progress: bool = True,
    network: nn.Module | None = None,
    normalisation: tuple[tuple[float, ...], tuple[float, ...]] | None = None,
    augment: bool = False,
) -> TrainedClassifier:
    """Train ``arch`` on ``dataset``, ``train_images`` freshly generated images per epoch (new images
    every epoch: with few real backgrounds a fixed set is memorised instead of the lesion being
    learned). A fraction ``masking`` of each batch is shown masked (:func:`masking_augmentation`).
    Returns the classifier with its normalisation and validation accuracy in ``metrics``. Reproducible
    from ``seed``. ``network`` replaces ``arch`` (the MONAI bundle passes its ``network_def``);
    ``normalisation`` = ``(mean, std)`` per channel fixes the input normalisation instead of measuring it
    on the training images. ``augment`` adds :func:`ordinary_augmentation` (flips, shifts, intensity): with
    ``masking=0`` that is the ordinary recipe of the benchmark's classifier zoo."""
    spec = SPECS[dataset]
    torch.manual_seed(seed)
    train = generate(dataset, train_images, seed=TRAIN_SEED * 1000)
    validation = generate(dataset, validation_images, seed=VALIDATION_SEED)
    axes = [0] + list(range(2, train.images.ndim))
    if normalisation is None:
        mean = tuple(float(v) for v in train.images.mean(dim=axes))
        std = tuple(float(v) for v in train.images.std(dim=axes))
    else:
        mean, std = tuple(normalisation[0]), tuple(normalisation[1])
    if network is None:
        network = build_classifier(arch, len(spec.spatial_shape), spec.channels, len(CLASS_NAMES), spec.spatial_shape)
    model = TrainedClassifier(
        network=network,
        arch=arch,
        dataset=dataset,
        spatial_dims=len(spec.spatial_shape),
        in_channels=spec.channels,
        mean=mean,
        std=std,
        class_names=CLASS_NAMES,
        metrics={},
        spatial_shape=tuple(spec.spatial_shape),
    )
    x_val = model.preprocess(validation.images)
    optimiser = torch.optim.AdamW(network.parameters(), lr=learning_rate, weight_decay=1e-4)
    steps_per_epoch = (len(train) + batch_size - 1) // batch_size
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=learning_rate, total_steps=epochs * steps_per_epoch
    )
    loss_function = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        if epoch:
            train = generate(dataset, train_images, seed=TRAIN_SEED * 1000 + epoch)
        x_train = model.preprocess(train.images)
        network.train()
        order = torch.randperm(len(train), generator=generator)
        bar = tqdm(range(steps_per_epoch), desc=f"{dataset} {arch} epoch {epoch + 1}/{epochs}",
                   disable=not progress, leave=False)
        running = 0.0
        for step in bar:
            index = order[step * batch_size : (step + 1) * batch_size]
            inputs, targets = x_train[index], train.labels[index]
            if masking > 0:
                inputs, targets = masking_augmentation(inputs, targets, train.lesions[index], generator, masking)
            if augment:
                inputs = ordinary_augmentation(inputs, generator)
            loss = loss_function(forward_logits(network, inputs), targets)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            scheduler.step()
            running = 0.9 * running + 0.1 * loss.item() if step else loss.item()
            bar.set_postfix(loss=f"{running:.3f}")
        accuracy = _accuracy(network, x_val, validation.labels)
        if progress:
            tqdm.write(f"{dataset} {arch} epoch {epoch + 1}/{epochs}: loss {running:.3f}, "
                       f"validation accuracy {accuracy:.3f}")
    network.eval()
    model.metrics = {
        "validation_accuracy": _accuracy(network, x_val, validation.labels),
        "train_images": train_images,
        "epochs": epochs,
        "masking": masking,
        "augment": augment,
        "seed": seed,
    }
    return model


def train_explainer(
    classifier: TrainedClassifier,
    train_images: int = 2048,
    epochs: int = 10,
    batch_size: int = 16,
    learning_rate: float = 1e-2,
    validation_images: int = 64,
    config: MedCAMConfig | None = None,
    checkpoint: str | Path | None = None,
    progress: bool = True,
    core_weight: float = 0.0,
) -> AmortizedMedCAM:
    """Train an :class:`AmortizedMedCAM` for a demo classifier on freshly generated images of its
    dataset (seeded: rerunning reproduces it), validating on the validation seed with the lesions as
    ground truth. The explainer's ``metadata`` records the recipe."""
    dataset = classifier.dataset
    train = generate(dataset, train_images, seed=EXPLAINER_SEED)
    validation = generate(dataset, validation_images, seed=VALIDATION_SEED)
    explainer = AmortizedMedCAM(classifier.network, config=config)
    explainer.metadata = {"dataset": dataset, "classifier_arch": classifier.arch, "train_images": train_images,
                          "epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate,
                          "train_seed": EXPLAINER_SEED, **({"core_weight": core_weight} if core_weight else {}),
                          "loss_weights": dataclasses.asdict(explainer.config.weights)}
    explainer.fit(
        classifier.preprocess(train.images), epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
        val=(classifier.preprocess(validation.images), validation.lesions), checkpoint=checkpoint,
        progress=progress, core_weight=core_weight,
    )
    return explainer
