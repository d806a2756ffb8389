"""medcam-dicom: minimal, verified evidence masks (Med-CAM) for medical image classifiers, as DICOM."""

from medcam_dicom.explain import AmortizedMedCAM, Explanation, LossWeights, MedCAM, MedCAMConfig

__version__ = "0.1.0"

__all__ = ["AmortizedMedCAM", "Explanation", "LossWeights", "MedCAM", "MedCAMConfig", "__version__"]
