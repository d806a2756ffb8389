"""Ignite metrics over :class:`~medcam_dicom.bundle.engines.MedCAMEvaluator` outputs, for a MONAI
evaluator's ``key_val_metric`` / ``additional_metrics``: the share of faithful masks, the mean mask area,
the mean IoU with ground-truth evidence, and the score that picks the best training epoch."""

from __future__ import annotations

import math
from typing import Any

import torch
from ignite.metrics import Metric

#: the decision must be kept on at least this share of the validation images (percent) for an epoch to
#: count as faithful; the same rule as ``AmortizedMedCAM.fit(keep_best=True)``
MIN_FAITHFUL_PCT = 98.0


def _floats(values: Any) -> list[float]:
    return torch.as_tensor(values).float().flatten().tolist()


def figures_of(*names: str) -> Any:
    """An output transform: the named per-image figures of a decollated evaluator output as one tensor
    ``(len(names), B)`` (a tensor, so that ignite hands it to ``update`` as it is)."""

    def transform(output: Any) -> torch.Tensor:
        items = output if isinstance(output, list) else [output]
        return torch.tensor([[float(torch.as_tensor(item[name]).float()) for item in items] for name in names])

    return transform


class ExplanationMean(Metric):
    """The mean over images of one per-image figure of the evaluator's output (``"faithful"``,
    ``"area_fraction"``, ``"iou"``, ...), NaN values left out (an image without ground truth has no IoU);
    ``scale`` multiplies it (100 for a percentage). NaN when no image has a value."""

    def __init__(self, figure: str, scale: float = 1.0, device: str | torch.device = "cpu") -> None:
        self.figure, self.scale = figure, float(scale)
        super().__init__(output_transform=figures_of(figure), device=device)

    def reset(self) -> None:
        self._values: list[float] = []

    def update(self, output: torch.Tensor) -> None:
        self._values.extend(v for v in _floats(output) if not math.isnan(v))

    def compute(self) -> float:
        return self.scale * sum(self._values) / len(self._values) if self._values else math.nan


class ExplainerScore(Metric):
    """One number per validation run, larger is better, for ``CheckpointSaver(save_key_metric=True)`` and
    ``EarlyStopHandler``: among runs that keep the decision on at least ``min_faithful_pct`` of the images,
    ``1 + mean IoU`` with the ground-truth evidence (``1 - mean area`` without any), so a faithful run
    always ranks above an unfaithful one, which scores ``faithful share - 1`` (in [-1, 0))."""

    def __init__(self, min_faithful_pct: float = MIN_FAITHFUL_PCT, device: str | torch.device = "cpu") -> None:
        self.min_faithful_pct = float(min_faithful_pct)
        super().__init__(output_transform=figures_of("faithful", "area_fraction", "iou"), device=device)

    def reset(self) -> None:
        self._faithful: list[float] = []
        self._areas: list[float] = []
        self._ious: list[float] = []

    def update(self, output: torch.Tensor) -> None:
        faithful, areas, ious = output
        self._faithful.extend(_floats(faithful))
        self._areas.extend(_floats(areas))
        self._ious.extend(v for v in _floats(ious) if not math.isnan(v))

    def compute(self) -> float:
        if not self._faithful:
            return math.nan
        share = sum(self._faithful) / len(self._faithful)
        if 100.0 * share < self.min_faithful_pct:
            return share - 1.0
        if self._ious:
            return 1.0 + sum(self._ious) / len(self._ious)
        return 1.0 - sum(self._areas) / len(self._areas)
