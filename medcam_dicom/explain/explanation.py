"""The result of explaining one image: a checked binary mask and the numbers that make it checkable."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class Explanation:
    """Minimal evidence for one classifier decision.

    Attributes:
        mask: ``torch.bool`` tensor with the image's spatial shape ``(H, W)`` or ``(D, H, W)``;
            ``True`` marks the evidence.
        soft_mask: ``float32`` tensor in ``[0, 1]``, same shape: the explainer's mask probabilities.
        target: the explained class index.
        probability: softmax probability of ``target`` on the full image.
        masked_probability: softmax probability of ``target`` on the hard-masked image (baseline
            outside the mask).
        faithful: ``argmax classifier(masked image) == target``, computed by re-running the classifier.
        area_fraction: fraction of voxels inside the mask.
        steps: optimisation steps used.
        seconds: wall time of the explanation.
        method: the method that produced the mask (``"medcam"`` for the per-image optimiser).
        history: per-step diagnostics (loss terms, area, faithfulness) when recorded.
        random_keep: the null check: share of random smooth masks of the same area and blob size on
            which the classifier also keeps the decision (:mod:`medcam_dicom.explain.null_check`);
            ``None`` when not run (``MedCAMConfig.null_masks = 0``).
        specific: ``faithful`` and ``random_keep`` below ``MedCAMConfig.null_limit``: the decision rests
            on this evidence rather than on any region of its size. ``False`` means the mask should not
            be read as *the* reason for the decision; ``None`` when the null check was not run.
    """

    mask: torch.Tensor
    soft_mask: torch.Tensor
    target: int
    probability: float
    masked_probability: float
    faithful: bool
    area_fraction: float
    steps: int
    seconds: float
    method: str = "medcam"
    history: list[dict[str, float]] = field(default_factory=list, repr=False)
    random_keep: float | None = None
    specific: bool | None = None

    def summary(self) -> dict[str, Any]:
        """The scalar figures as a JSON-serialisable dictionary."""
        return {
            "method": self.method,
            "target": self.target,
            "probability": self.probability,
            "masked_probability": self.masked_probability,
            "faithful": self.faithful,
            "area_fraction": self.area_fraction,
            "steps": self.steps,
            "seconds": self.seconds,
            "random_keep": self.random_keep,
            "specific": self.specific,
        }
