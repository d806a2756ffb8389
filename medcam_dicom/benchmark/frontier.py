"""Whether issue 12's targets can hold together: what the masks of every method measured allow.

The benchmark asks one explainer setting for a mask that is, on the same images, (a) as convincing as the
full image (masked probability at least the original's, on 90 % of the decisions), (b) no larger than
the smallest top-k mask of the best ranking method that keeps the decision (median ratio at most 1, on
the lesion decisions) and (c) comprehensive (the target's mean probability after the mask is blurred
away at most 0.3). This module pools the per-image rows of benchmark runs on the same classifiers and
images (``benchmark.json``'s ``images``: any explainer, any setting, and the ranking methods' smallest
top-k areas) and asks, per lesion decision, what the best mask *any* of them found allows:

- ``decision_area``: the smallest top-k area of the best ranking method that keeps the decision (the
  minimality ratio's denominator);
- ``convincing_area``: the smallest area of a mask, of any method, that keeps the decision and is as
  convincing as the full image (a ranking method's smallest probability-keeping top-k area counts too);
- ``small_removed``: the lowest target probability after removal among the masks of at most
  ``decision_area``;
- ``lesion_area``: the finding's area, from a mask's precision and IoU (``|L| = |M∩L|/IoU - |M| + |M∩L|``).

:func:`frontier` then counts how many lesion decisions must have a mask that is both (a) and (b) for
the two shares to hold at once - with every "normal" decision counted as convincing, which the whole
image always is - against how many have one among the masks measured, and the lowest mean probability
after removal that masks meeting (b) on half of the lesion decisions leave. These are bounds over the
masks measured, not over every possible mask: a method that finds smaller convincing masks moves them.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from medcam_dicom.benchmark.pooled import PRESERVING_AREA, best_ranking_areas


@dataclass(frozen=True)
class DecisionBounds:
    """What the measured masks allow on one lesion decision (areas as fractions of the image)."""

    key: tuple[str, int]
    decision_area: float
    convincing_area: float | None
    small_removed: float | None
    lesion_area: float | None

    @property
    def convincing_and_minimal(self) -> bool:
        """Whether some measured mask is as convincing as the full image at no more than ``decision_area``."""
        return self.convincing_area is not None and self.convincing_area <= self.decision_area


@dataclass(frozen=True)
class Frontier:
    """The pooled answer: ``decisions`` (all) and ``bounds`` (one per lesion decision with a ranking
    method's smallest faithful area); ``m_share`` and ``removed_limit`` are the targets checked."""

    decisions: int
    bounds: tuple[DecisionBounds, ...]
    m_share: float = 0.9
    removed_limit: float = 0.3

    @property
    def needed_both(self) -> int:
        """Lesion decisions that need a mask both as convincing as the full image and no larger than
        the best ranking method's smallest faithful one, for "m>=p on ``m_share``" and "median minimality
        ratio <= 1" to hold together (every other decision counted as convincing)."""
        lesions = len(self.bounds)
        convincing_lesions = math.ceil(self.m_share * self.decisions - 1e-9) - (self.decisions - lesions)
        return max(0, convincing_lesions + math.ceil(lesions / 2) - lesions)

    @property
    def available_both(self) -> int:
        """Lesion decisions on which a measured mask is both."""
        return sum(b.convincing_and_minimal for b in self.bounds)

    @property
    def least_removed(self) -> float | None:
        """The lowest mean target probability after removal over the lesion decisions that masks no
        larger than the best ranking method's smallest faithful ones, on half of them, leave (the rest
        counted at 0); ``None`` when fewer than half have such a mask measured."""
        values = sorted(b.small_removed for b in self.bounds if b.small_removed is not None)
        half = math.ceil(len(self.bounds) / 2)
        if not self.bounds or len(values) < half:
            return None
        return sum(values[:half]) / len(self.bounds)

    @property
    def decision_to_lesion(self) -> list[float]:
        """Per lesion decision (with a lesion area): the best ranking method's smallest faithful area
        over the finding's area."""
        return [b.decision_area / b.lesion_area for b in self.bounds if b.lesion_area]

    def lines(self) -> list[str]:
        """The figures in words, one per line."""
        ratios = self.decision_to_lesion
        convincing = [b.convincing_area / b.decision_area for b in self.bounds if b.convincing_area is not None]
        least = self.least_removed
        return [
            f"decisions {self.decisions}, lesion decisions {len(self.bounds)}",
            f"smallest faithful top-k area (best ranking method) / finding's area: median "
            f"{statistics.median(ratios):.2f}, below 1 on {sum(r < 1 for r in ratios)} of {len(ratios)}"
            if ratios else "finding's area: unknown (no mask with IoU > 0)",
            f"smallest convincing mask of any method / that area: median "
            f"{statistics.median(convincing):.2f} ({len(convincing)} decisions with one)"
            if convincing else "no mask as convincing as the full image",
            f"m>=p on {100 * self.m_share:.0f} % and median minimality <= 1 together need {self.needed_both} "
            f"lesion decisions with a mask that is both; the masks measured have one on {self.available_both}",
            f"mean p removed with masks <= that area on half of the lesion decisions: at least {least:.2f} "
            f"(target <= {self.removed_limit})" if least is not None
            else "p removed at that area: too few small masks measured",
        ]


def _lesion_area(rows: Iterable[Mapping[str, Any]]) -> float | None:
    for row in rows:
        iou, precision, area = row.get("iou"), row.get("precision"), row.get("area_fraction")
        if iou and precision is not None and area:
            overlap = precision * area
            return overlap / iou - area + overlap
    return None


def frontier(images: Iterable[Mapping[str, Any]], m_share: float = 0.9, removed_limit: float = 0.3) -> Frontier:
    """Pool benchmark rows (``benchmark.json``'s ``images``, of one or more runs on the same classifiers
    and images) into a :class:`Frontier`. A lesion decision is an image whose rows have a precision (the
    benchmark's lesion images explained as "lesion") and a ranking method's smallest faithful area."""
    images = list(images)
    decision_areas = best_ranking_areas(images)
    preserving_areas = best_ranking_areas(images, PRESERVING_AREA)
    by_decision: dict[tuple[str, int], list[Mapping[str, Any]]] = defaultdict(list)
    for row in images:
        by_decision[(row["dataset"], int(row["index"]))].append(row)
    bounds = []
    for key, rows in sorted(by_decision.items()):
        if all(row.get("precision") is None for row in rows) or key not in decision_areas:
            continue
        decision_area = decision_areas[key]
        convincing = [row["area_fraction"] for row in rows
                      if row["faithful"] and row["masked_probability"] >= row["probability"]]
        if key in preserving_areas:
            convincing.append(preserving_areas[key])
        removed = [row["removed_probability"] for row in rows
                   if row["faithful"] and row["area_fraction"] <= decision_area
                   and row.get("removed_probability") is not None]
        bounds.append(DecisionBounds(key, decision_area, min(convincing) if convincing else None,
                                     min(removed) if removed else None, _lesion_area(rows)))
    return Frontier(len(by_decision), tuple(bounds), m_share, removed_limit)
