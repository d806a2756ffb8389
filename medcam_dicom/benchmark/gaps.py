"""How far apart two methods are on the same images, and how sure that is: a paired gap with a bootstrap
interval over classifiers.

The benchmark compares Med-CAM with the ranking methods cut to its area *on each image*, so the natural
figure is the mean of the per-image differences (e.g. precision of Med-CAM minus RISE's). Images of one
classifier are not independent draws - a classifier on which every method does badly moves all its
images together - so the interval resamples **classifiers** (each with all its images), not images: with
eight classifiers it is wide, and that width is the honest answer to "is Med-CAM behind RISE here?".
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class PairedGap:
    """The mean per-image difference ``first - second`` over ``images`` images of ``classifiers``
    classifiers, with a bootstrap interval (``level``, resampling classifiers)."""

    mean: float
    low: float
    high: float
    images: int
    classifiers: int
    level: float = 0.95

    def __str__(self) -> str:
        return f"{self.mean:+.3f} [{self.low:+.3f}, {self.high:+.3f}]"

    @property
    def settled(self) -> str:
        """``"ahead"`` or ``"behind"`` when the interval excludes 0, else ``"level"`` (within what another
        draw of classifiers and images would change)."""
        if self.low > 0:
            return "ahead"
        if self.high < 0:
            return "behind"
        return "level"


def paired_gap(
    differences: Mapping[str, Iterable[float]], resamples: int = 4000, level: float = 0.95, seed: int = 0
) -> PairedGap:
    """The mean of per-image ``differences`` (``{classifier: [difference per image]}``) and its percentile
    bootstrap interval at ``level``: ``resamples`` times, classifiers are drawn with replacement (as many
    as there are) and the mean over all their images taken. Seeded, so a report reprints the same interval."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    groups = {name: [float(v) for v in values] for name, values in differences.items()}
    groups = {name: values for name, values in groups.items() if values}
    if not groups:
        raise ValueError("no differences to take a gap of")
    everything = [v for values in groups.values() for v in values]
    names = sorted(groups)
    sums = {name: (sum(groups[name]), len(groups[name])) for name in names}
    draw = random.Random(seed)
    means = []
    for _ in range(resamples):
        picked = draw.choices(names, k=len(names))
        total, count = (sum(sums[name][i] for name in picked) for i in (0, 1))
        means.append(total / count)
    means.sort()
    tail = (1.0 - level) / 2.0
    low = means[min(len(means) - 1, int(tail * len(means)))]
    high = means[max(0, int((1.0 - tail) * len(means)) - 1)]
    return PairedGap(statistics.fmean(everything), low, high, len(everything), len(names), level)


def gaps_to_baselines(
    rows: Iterable[Mapping], method: str, baselines: Iterable[str], key: str = "precision",
    baseline_key: str | None = None,
) -> dict[str, PairedGap]:
    """For benchmark image rows (``benchmark.json``'s ``images``: ``dataset``, ``index``, ``method`` and
    ``key``), the paired gap of ``method`` minus each of ``baselines`` on ``key`` over the images both
    have a value for (for precision: the lesion decisions), grouped by classifier (``dataset``). The
    baselines' figure is read from ``baseline_key`` when given (``equal_evidence_precision``: the
    precision of each ranking method's mask holding as much evidence as ``method``'s)."""
    baselines = tuple(baselines)
    values: dict[tuple[str, int], dict[str, float]] = {}
    for row in rows:
        field = baseline_key if baseline_key and row["method"] in baselines else key
        if row.get(field) is not None:
            values.setdefault((row["dataset"], row["index"]), {})[row["method"]] = float(row[field])
    gaps = {}
    for baseline in baselines:
        differences: dict[str, list[float]] = {}
        for (classifier, _), by_method in values.items():
            if method in by_method and baseline in by_method:
                differences.setdefault(classifier, []).append(by_method[method] - by_method[baseline])
        if differences:
            gaps[baseline] = paired_gap(differences)
    return gaps
