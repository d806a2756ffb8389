"""The demo classifiers: small MONAI ResNets trained on the benchmark data by
``scripts/train_demo_models.py`` and shipped with the package; :class:`TrainedClassifier` also holds the
benchmark's classifier zoo (:mod:`medcam_dicom.benchmark.zoo`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medcam_dicom.checkpoints import half_state, load_checkpoint, save_checkpoint
from medcam_dicom.models.architectures import build_classifier

DEMO_DIR = Path(__file__).resolve().parent / "demo"


@dataclass
class TrainedClassifier:
    """A classifier with what is needed to feed it: per-channel normalisation and class names.

    ``preprocess`` maps an image in [0, 1] ``(C, *spatial)`` to the classifier's input space.
    """

    network: nn.Module
    arch: str
    dataset: str
    spatial_dims: int
    in_channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: tuple[str, ...]
    metrics: dict[str, Any]
    spatial_shape: tuple[int, ...] | None = None  # the training images' shape (fixed-size architectures need it)

    def preprocess(self, image: torch.Tensor) -> torch.Tensor:
        """Normalise an image in [0, 1] (or a batch) channel-wise with the training statistics."""
        shape = (-1,) + (1,) * self.spatial_dims
        mean = torch.tensor(self.mean, dtype=image.dtype, device=image.device).view(shape)
        std = torch.tensor(self.std, dtype=image.dtype, device=image.device).view(shape)
        return (image - mean) / std

    def save(self, path: str | Path) -> None:
        """Save weights (float16, to keep the file small) and metadata to one ``.pt`` file."""
        payload = {
            "format": "medcam-dicom-classifier/1",
            "arch": self.arch,
            "dataset": self.dataset,
            "spatial_dims": self.spatial_dims,
            "in_channels": self.in_channels,
            "mean": list(self.mean),
            "std": list(self.std),
            "class_names": list(self.class_names),
            "metrics": self.metrics,
            "spatial_shape": None if self.spatial_shape is None else list(self.spatial_shape),
            "state_dict": half_state(self.network),
        }
        save_checkpoint(payload, path)

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> TrainedClassifier:
        """Load a file written by :meth:`save`; raises ``ValueError`` naming the file when it is not one."""
        payload = load_checkpoint(path, "medcam-dicom-classifier/1", "classifier")
        spatial_shape = payload.get("spatial_shape")
        spatial_shape = None if spatial_shape is None else tuple(int(v) for v in spatial_shape)
        network = build_classifier(
            payload["arch"], payload["spatial_dims"], payload["in_channels"], len(payload["class_names"]),
            spatial_shape,
        )
        state = {k: v.float() if v.is_floating_point() else v for k, v in payload["state_dict"].items()}
        network.load_state_dict(state)
        network.eval().to(device)
        return cls(
            network=network,
            arch=payload["arch"],
            dataset=payload["dataset"],
            spatial_dims=payload["spatial_dims"],
            in_channels=payload["in_channels"],
            mean=tuple(payload["mean"]),
            std=tuple(payload["std"]),
            class_names=tuple(payload["class_names"]),
            metrics=dict(payload.get("metrics", {})),
            spatial_shape=spatial_shape,
        )


def demo_checkpoint_path(dataset: str, arch: str = "resnet18-small") -> Path:
    """Where the shipped demo checkpoint of ``dataset`` lies."""
    return DEMO_DIR / f"{dataset}-{arch}.pt"


def demo_plain_checkpoint_path(dataset: str, arch: str = "resnet18-small") -> Path:
    """Where the plain-trained classifier of a demo dataset lies when the demo classifier was fine-tuned
    from it with masking (``ct3d``: from scratch with masking it had not learned in the time tried); it
    ships too, as the classifier a user would have trained."""
    return DEMO_DIR / f"{dataset}-{arch}-plain.pt"


def demo_explainer_path(dataset: str) -> Path:
    """Where the shipped amortised explainer of a demo classifier lies (``scripts/train_demo_models.py
    --explainers`` writes it)."""
    return DEMO_DIR / f"{dataset}-explainer.pt"


def load_demo_classifier(dataset: str, device: str | torch.device = "cpu") -> TrainedClassifier:
    """The shipped demo classifier for a benchmark dataset (``ct``, ``mr``, ``fundus``, ...)."""
    path = demo_checkpoint_path(dataset)
    if not path.is_file():
        raise ValueError(
            f"no demo classifier for dataset {dataset!r} at {path}; run scripts/train_demo_models.py"
        )
    return TrainedClassifier.load(path, device)
