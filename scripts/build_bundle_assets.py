"""Write the MONAI bundle's shipped files from the package's demo models and generated data:

- ``monai_bundle/models/model.pt``: the demo CT classifier's weights (``network_def`` of
  ``configs/inference.json``; the same recipe ``configs/train.json`` runs, so training reproduces it);
- ``monai_bundle/models/explainer.pt``: its amortised explainer (``scripts/train_demo_models.py --explainers``);
- ``monai_bundle/sample_data/``: four CT slices in Hounsfield units as NIfTI (two with a lesion) from the
  benchmark's test seed, and one DICOM CT slice with a lesion (``dicom/lesion-ct.dcm``).

    python scripts/build_bundle_assets.py
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np

from medcam_dicom.benchmark.training import TEST_SEED
from medcam_dicom.checkpoints import half_state, save_checkpoint
from medcam_dicom.data.synthetic import generate
from medcam_dicom.dicom.examples import write_lesion_examples
from medcam_dicom.models.demo import demo_explainer_path, load_demo_classifier

BUNDLE = Path(__file__).resolve().parents[1] / "monai_bundle"


def main() -> None:
    models = BUNDLE / "models"
    models.mkdir(parents=True, exist_ok=True)
    classifier = load_demo_classifier("ct")
    save_checkpoint(half_state(classifier.network), models / "model.pt")
    shutil.copyfile(demo_explainer_path("ct"), models / "explainer.pt")
    print(f"classifier normalisation (configs/inference.json): mean {classifier.mean}, std {classifier.std}")

    samples = BUNDLE / "sample_data"
    shutil.rmtree(samples, ignore_errors=True)
    samples.mkdir(parents=True)
    images = generate("ct", 4, seed=TEST_SEED + 100)
    for index, (image, label) in enumerate(zip(images.images, images.labels)):
        hounsfield = (image[0].numpy() * 400.0 - 160.0).astype(np.int16)  # the window (40, 400) inverted
        name = f"ct-{index}-{'lesion' if int(label) else 'normal'}.nii.gz"
        nib.save(nib.Nifti1Image(hounsfield, np.diag([0.7, 0.7, 1.0, 1.0])), str(samples / name))
    dicom = samples / "dicom"
    for path in write_lesion_examples(dicom):
        if "fundus" in path.name:
            path.unlink()
    print(f"wrote {sorted(p.relative_to(BUNDLE) for p in samples.rglob('*') if p.is_file())}")


if __name__ == "__main__":
    main()
