"""Inputs of the bundle's workflows: the demo datalist (synthetic CT slices written as NIfTI files, the
default ``datalist`` of ``configs/train.json``) and the split of an input folder into images MONAI loads
and files offered to the DICOM path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

#: files the image path reads with MONAI's LoadImage; everything else under the input folder is
#: offered to the DICOM reader
IMAGE_SUFFIXES = (".nii", ".nii.gz", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".nrrd", ".mha", ".mhd")
#: the demo's CT window (centre 40, width 400) as the HU range its images are written in
DEMO_HU_RANGE = (-160.0, 240.0)


def demo_datalist(folder: str | Path, training: int = 512, validation: int = 64, seed: int = 0) -> str:
    """Write a MONAI datalist of synthetic CT slices (``medcam_dicom.data.synthetic``, dataset ``ct``) into
    ``folder`` and return its path: ``training`` images, ``validation`` images with their ``evidence``
    masks (the drawn lesion; empty for "normal"), as NIfTI in Hounsfield units like the bundle's sample
    data. Written once per (counts, seed); later calls reuse the files."""
    import nibabel as nib

    from medcam_dicom.data.synthetic import generate

    folder = Path(folder).expanduser() / f"ct-{training}-{validation}-seed{seed}"
    datalist = folder / "datalist.json"
    if datalist.is_file():
        return str(datalist)
    low, high = DEMO_HU_RANGE
    affine = np.diag([0.7, 0.7, 1.0, 1.0])
    entries: dict[str, list[dict[str, Any]]] = {"training": [], "validation": []}
    for part, count, part_seed in (("training", training, 1000 + seed), ("validation", validation, 2000 + seed)):
        generated = generate("ct", count, seed=part_seed)
        (folder / part).mkdir(parents=True, exist_ok=True)
        for index, (image, label, lesion) in enumerate(zip(generated.images, generated.labels, generated.lesions)):
            name = f"{part}/ct-{index:04d}-{'lesion' if int(label) else 'normal'}"
            hounsfield = (image[0].numpy() * (high - low) + low).astype(np.int16)
            nib.save(nib.Nifti1Image(hounsfield, affine), str(folder / f"{name}.nii.gz"))
            entry: dict[str, Any] = {"image": f"{name}.nii.gz", "label": int(label)}
            if part == "validation":
                entry["evidence"] = f"{name}-evidence.nii.gz"
                nib.save(nib.Nifti1Image(lesion.numpy().astype(np.uint8), affine), str(folder / entry["evidence"]))
            entries[part].append(entry)
    temporary = datalist.with_suffix(".tmp")
    temporary.write_text(json.dumps(entries, indent=1))
    temporary.replace(datalist)
    return str(datalist)


def input_files(input_dir: str | Path) -> dict[str, list[Any]]:
    """The files under ``input_dir`` (walked recursively; or one file), split into ``"images"``: datalist
    items ``{"image": path}`` for MONAI's loader, and ``"others"``: paths for the DICOM reader. Raises
    ``ValueError`` when ``input_dir`` does not exist."""
    root = Path(input_dir)
    if not root.exists():
        raise ValueError(f"input {root} does not exist")
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    files = [p for p in files if not p.name.startswith(".")]
    images = [p for p in files if p.name.lower().endswith(IMAGE_SUFFIXES)]
    return {"images": [{"image": str(p)} for p in images], "others": [p for p in files if p not in images]}


def readable_items(items: list[dict[str, Any]], transform: Any) -> dict[str, list[dict[str, Any]]]:
    """Split datalist ``items`` into those ``transform`` (the preprocessing, loading included) accepts and
    report rows for the others, naming the file and the error, so one unreadable file does not stop a run.
    Each image is read here and again by the dataset; the check keeps nothing in memory."""
    good, failed = [], []
    for item in items:
        try:
            transform(dict(item))
        except Exception as error:  # noqa: BLE001 - MONAI wraps every loader/transform error in RuntimeError
            cause = error
            while cause.__cause__ is not None:
                cause = cause.__cause__
            failed.append({"source": str(item.get("image")), "kind": "image", "status": "failed",
                           "reason": f"{type(cause).__name__}: {cause}"})
        else:
            good.append(item)
    return {"items": good, "failed": failed}
