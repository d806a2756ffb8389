"""A classifier bundle in the MONAI model-zoo layout, made the way a MONAI user makes one — with MONAI,
torch and nibabel only, nothing from medcam_dicom — for the tests (and ``scripts/benchmark_bundle.py``)
of the bundle's ``classifier_bundle`` / ``datalist`` keys.

The task: "lesion" (a bright ball or disc, at a random place and size) against "normal" (noise and a
dimmer, larger distractor blob in both classes), 2D or 3D, written as NIfTI images (2D ones also as
PNG when asked), a datalist whose validation entries carry the lesion as an ``evidence`` mask, and a
small MONAI ``DenseNet`` trained briefly with plain cross-entropy. The bundle's
``configs/inference.json`` has ``network_def`` and a dictionary ``preprocessing`` (loading included), and
``models/model.pt`` the weights (a plain state dict, or ``{"model": state_dict}`` as CheckpointSaver
writes it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from monai.bundle import ConfigParser
from monai.data import DataLoader, Dataset


@dataclass
class ZooBundle:
    """What :func:`make_zoo_bundle` wrote: the bundle folder, the datalist, a folder of test images, the
    classifier's validation accuracy and the images' spatial shape."""

    root: Path
    datalist: Path
    test_dir: Path
    test_lesions: dict[str, np.ndarray]
    accuracy: float
    shape: tuple[int, ...]


def _image(rng: np.random.Generator, shape: tuple[int, ...], lesion: bool) -> tuple[np.ndarray, np.ndarray]:
    grids = np.meshgrid(*[np.arange(s, dtype=np.float32) for s in shape], indexing="ij")
    image = rng.normal(0.0, 0.25, shape).astype(np.float32)
    # a distractor in every image: dimmer and larger than a lesion
    centre = [rng.uniform(0.25 * s, 0.75 * s) for s in shape]
    radius = rng.uniform(0.18, 0.25) * min(shape)
    image += 0.5 * (sum((g - c) ** 2 for g, c in zip(grids, centre)) < radius**2)
    evidence = np.zeros(shape, dtype=bool)
    if lesion:
        centre = [rng.uniform(0.2 * s, 0.8 * s) for s in shape]
        radius = rng.uniform(0.07, 0.11) * min(shape)
        evidence = sum((g - c) ** 2 for g, c in zip(grids, centre)) < radius**2
        image[evidence] += 2.0
    return image, evidence


def _inference_config(spatial_dims: int, shape: tuple[int, ...]) -> dict:
    return {
        "imports": ["$import torch"],
        "bundle_root": ".",
        "device": "$torch.device('cpu')",
        "network_def": {
            "_target_": "monai.networks.nets.DenseNet",
            "spatial_dims": spatial_dims,
            "in_channels": 1,
            "out_channels": 2,
            "init_features": 8,
            "growth_rate": 8,
            "block_config": [2, 2, 2],
            "bn_size": 2,
        },
        "network": "$@network_def.to(@device)",
        "preprocessing": {
            "_target_": "Compose",
            "transforms": [
                {"_target_": "LoadImaged", "keys": "image", "image_only": True},
                {"_target_": "EnsureChannelFirstd", "keys": "image"},
                {"_target_": "NormalizeIntensityd", "keys": "image"},
                {"_target_": "Resized", "keys": "image", "spatial_size": list(shape), "mode": "area"},
            ],
        },
        "inferer": {"_target_": "SimpleInferer"},
    }


def _write(path: Path, array: np.ndarray, png: bool) -> str:
    if png:
        from PIL import Image

        scaled = np.clip((array + 1.0) * 60.0, 0, 255).astype(np.uint8)
        Image.fromarray(scaled).save(path.with_suffix(".png"))
        return str(path.with_suffix(".png"))
    nib.save(nib.Nifti1Image(array, np.diag([0.8] * 3 + [1.0])), str(path.with_suffix(".nii.gz")))
    return str(path.with_suffix(".nii.gz"))


def make_zoo_bundle(
    folder: Path,
    spatial_dims: int = 2,
    size: int = 64,
    training: int = 128,
    validation: int = 32,
    tests: int = 4,
    epochs: int = 6,
    wrapped_weights: bool = False,
    png_tests: bool = False,
    seed: int = 0,
) -> ZooBundle:
    """Write data, a datalist and a trained classifier bundle under ``folder``; see the module docstring.
    Test images (``tests``, half with a lesion; 2D ones as PNG with ``png_tests``) are written at twice
    the classifier's size so that the preprocessing's resize and its inversion are exercised."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    shape = (size,) * spatial_dims
    data = folder / "data"
    data.mkdir(parents=True, exist_ok=True)
    datalist: dict[str, list[dict]] = {"training": [], "validation": []}
    for part, count in (("training", training), ("validation", validation)):
        for index in range(count):
            lesion = index % 2 == 1
            image, evidence = _image(rng, shape, lesion)
            entry = {"image": Path(_write(data / f"{part}-{index:03d}", image, False)).name, "label": int(lesion)}
            if part == "validation":
                entry["evidence"] = Path(_write(data / f"{part}-{index:03d}-evidence", evidence.astype(np.uint8),
                                                False)).name
            datalist[part].append(entry)
    (data / "datalist.json").write_text(json.dumps(datalist, indent=1))

    test_dir = folder / "test-images"
    test_dir.mkdir(exist_ok=True)
    test_lesions = {}
    for index in range(tests):
        image, evidence = _image(rng, shape, index % 2 == 1)
        for axis in range(spatial_dims):  # twice the size, so that the classifier's resize recovers the image
            image, evidence = image.repeat(2, axis), evidence.repeat(2, axis)
        written = _write(test_dir / f"test-{index}-{'lesion' if index % 2 else 'normal'}", image,
                         png_tests and spatial_dims == 2)
        test_lesions[Path(written).name] = evidence

    root = folder / "classifier_bundle"
    (root / "configs").mkdir(parents=True, exist_ok=True)
    (root / "models").mkdir(exist_ok=True)
    config = _inference_config(spatial_dims, shape)
    (root / "configs" / "inference.json").write_text(json.dumps(config, indent=2))
    (root / "configs" / "metadata.json").write_text(json.dumps({"version": "0.1.0", "name": "zoo-style test"}))

    parser = ConfigParser(config)
    parser["bundle_root"] = str(root)
    network = parser.get_parsed_content("network_def")
    preprocessing = parser.get_parsed_content("preprocessing")

    def loader(part: str, shuffle: bool) -> DataLoader:
        items = [{"image": str(data / e["image"]), "label": e["label"]} for e in datalist[part]]
        return DataLoader(Dataset(items, preprocessing), batch_size=16, shuffle=shuffle)

    train_loader, validation_loader = loader("training", True), loader("validation", False)
    optimiser = torch.optim.Adam(network.parameters(), lr=3e-3)
    for _ in range(epochs):
        network.train()
        for batch in train_loader:
            optimiser.zero_grad()
            loss = torch.nn.functional.cross_entropy(network(batch["image"].as_tensor()), batch["label"])
            loss.backward()
            optimiser.step()
    network.eval()
    correct = 0
    with torch.no_grad():
        for batch in validation_loader:
            correct += int((network(batch["image"].as_tensor()).argmax(1) == batch["label"]).sum())
    state = network.state_dict()
    torch.save({"model": state} if wrapped_weights else state, root / "models" / "model.pt")
    return ZooBundle(root, data / "datalist.json", test_dir, test_lesions, correct / validation, shape)
