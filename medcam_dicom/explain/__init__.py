"""The method layer: Med-CAM and the comparison explainers. Knows torch and MONAI, nothing of DICOM."""

from medcam_dicom.explain.amortized import AmortizedMedCAM
from medcam_dicom.explain.config import LossWeights, MedCAMConfig
from medcam_dicom.explain.explanation import Explanation
from medcam_dicom.explain.medcam import MedCAM

__all__ = ["AmortizedMedCAM", "Explanation", "LossWeights", "MedCAM", "MedCAMConfig"]
