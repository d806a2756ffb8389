"""The method layer: Med-CAM and the comparison explainers. Knows torch and MONAI, nothing of DICOM.

The public names load lazily, so light modules of this package (``config``) can be imported — by the
command line's ``--help``, for instance — without loading torch and MONAI.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from medcam_dicom.explain.amortized import AmortizedMedCAM
    from medcam_dicom.explain.config import LossWeights, MedCAMConfig
    from medcam_dicom.explain.explanation import Explanation
    from medcam_dicom.explain.medcam import MedCAM

_MODULE_OF = {
    "AmortizedMedCAM": "medcam_dicom.explain.amortized",
    "Explanation": "medcam_dicom.explain.explanation",
    "LossWeights": "medcam_dicom.explain.config",
    "MedCAM": "medcam_dicom.explain.medcam",
    "MedCAMConfig": "medcam_dicom.explain.config",
}

__all__ = ["AmortizedMedCAM", "Explanation", "LossWeights", "MedCAM", "MedCAMConfig"]


def __getattr__(name: str) -> Any:
    if name in _MODULE_OF:
        return getattr(import_module(_MODULE_OF[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
