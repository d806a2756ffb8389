"""The MONAI bundle's workflows (``monai_bundle/configs/*.json`` instantiate them): training the demo
classifier and its amortised explainer, explaining a folder of images or DICOM series, and the benchmark."""

from medcam_dicom.bundle.workflows import (
    BundleEvaluation,
    BundleInference,
    BundleTraining,
    default_bundle_root,
)

__all__ = ["BundleEvaluation", "BundleInference", "BundleTraining", "default_bundle_root"]
