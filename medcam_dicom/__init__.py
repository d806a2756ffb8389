"""medcam-dicom: minimal, verified evidence masks (Med-CAM) for medical image classifiers, as DICOM.

The public API (``MedCAM``, ``MedCAMConfig``, ``Explanation``, ``AmortizedMedCAM``, ``LossWeights``) is
imported on first use, so ``import medcam_dicom`` — and ``medcam-dicom --help`` — do not load torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["AmortizedMedCAM", "Explanation", "LossWeights", "MedCAM", "MedCAMConfig", "__version__"]

if TYPE_CHECKING:
    from medcam_dicom.explain import AmortizedMedCAM, Explanation, LossWeights, MedCAM, MedCAMConfig


def __getattr__(name: str) -> Any:
    if name in __all__:
        value = getattr(importlib.import_module("medcam_dicom.explain"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'medcam_dicom' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
