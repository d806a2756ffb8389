"""The MONAI bundle's building blocks (``monai_bundle/configs/*.json`` instantiate them): the user's
classifier bundle, MONAI engines that train and run the amortised explainer, its metrics, transforms and
handlers, and the DICOM path of an inference run."""

from medcam_dicom.bundle.datalists import demo_datalist, input_files, readable_items
from medcam_dicom.bundle.engines import MedCAMEvaluator, MedCAMTrainer
from medcam_dicom.bundle.handlers import ExplanationReport, TrainingHistory
from medcam_dicom.bundle.metrics import ExplainerScore, ExplanationMean
from medcam_dicom.bundle.transforms import EvidenceMaskd
from medcam_dicom.bundle.workflows import (
    BundleEvaluation,
    BundleTraining,
    default_bundle_root,
    explain_dicom_files,
)
from medcam_dicom.models.classifier_bundle import ClassifierBundle, ClassifierBundleError

__all__ = [
    "BundleEvaluation",
    "BundleTraining",
    "ClassifierBundle",
    "ClassifierBundleError",
    "EvidenceMaskd",
    "ExplainerScore",
    "ExplanationMean",
    "ExplanationReport",
    "MedCAMEvaluator",
    "MedCAMTrainer",
    "TrainingHistory",
    "default_bundle_root",
    "demo_datalist",
    "explain_dicom_files",
    "input_files",
    "readable_items",
]
