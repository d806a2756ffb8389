"""What explaining a series produced, in the source's pixel grid, before and after writing DICOM."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medcam_dicom import __version__
from medcam_dicom.explain.explanation import Explanation


@dataclass(frozen=True)
class Producer:
    """Which model made the evidence: ``name`` and ``version`` for people, ``fingerprint`` (a hash of the
    whole model description) for UIDs, so a changed configuration never reuses a UID."""

    name: str
    version: str
    fingerprint: str

    @property
    def algorithm_name(self) -> str:
        """The algorithm's name in every result (SEG Algorithm Identification, SR TID 4019, Contributing
        Equipment's model name): "Med-CAM <model>"."""
        return f"Med-CAM {self.name}"[:64]

    @property
    def algorithm_version(self) -> str:
        """The algorithm's version in every result: the package's and the model description's."""
        return f"{__version__} model {self.version}"[:64]


@dataclass
class EvidenceMask:
    """One explained decision: a class on one frame (2D models) or on the whole volume (3D models).

    ``frame_indices`` index :attr:`ImageSeries.frames`; ``mask`` is ``(len(frame_indices), rows, columns)``
    on the source grid; ``soft_mask`` the explainer's mask probabilities on the same grid (float32 in
    [0, 1]), kept only when a Parametric Map is asked for.
    """

    class_index: int
    class_name: str
    frame_indices: tuple[int, ...]
    mask: np.ndarray
    explanation: Explanation
    soft_mask: np.ndarray | None = None

    @property
    def area_fraction(self) -> float:
        """Fraction of source pixels inside the mask (what the SEG shows)."""
        return float(self.mask.mean())

    def summary(self) -> dict[str, Any]:
        return {
            "class": self.class_name,
            "frames": [i + 1 for i in self.frame_indices]
            if len(self.frame_indices) < 2
            else [self.frame_indices[0] + 1, self.frame_indices[-1] + 1],
            "size": list(self.mask.shape[1:]),  # rows, columns: which part of a series mixing sizes
            "probability": self.explanation.probability,
            "masked_probability": self.explanation.masked_probability,
            "faithful": self.explanation.faithful,
            "random_keep": self.explanation.random_keep,
            "specific": self.explanation.specific,
            "area_fraction": self.area_fraction,
            "steps": self.explanation.steps,
            "seconds": self.explanation.seconds,
            "method": self.explanation.method,
        }


@dataclass
class SeriesResult:
    """The outcome for one series: ``status`` is ``explained``, ``skipped`` or ``failed`` (with ``reason``)."""

    series_uid: str
    label: str
    status: str
    reason: str | None = None
    model: str | None = None
    study_uid: str | None = None
    evidence: list[EvidenceMask] = field(default_factory=list)
    outputs: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "series_uid": self.series_uid,
            "study_uid": self.study_uid,
            "label": self.label,
            "status": self.status,
            "reason": self.reason,
            "model": self.model,
            "evidence": [e.summary() for e in self.evidence],
            "outputs": [str(p) for p in self.outputs],
            "notes": self.notes,
        }
