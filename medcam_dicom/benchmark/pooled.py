"""Benchmark runs read back and pooled: the ``DIR+DIR`` folders the comparison scripts accept, and the
best ranking method's smallest top-k areas the minimality ratio is taken against.

A benchmark run (``medcam-dicom benchmark --out DIR``) writes ``DIR/benchmark.json``: its settings
(``config``), its classifiers (``datasets``) and one row per method and image (``images``). Runs with the
same settings on different classifiers (e.g. the zoo's held-out split run in two parts) are pooled into
one report by naming them ``DIR+DIR``; ``scripts/benchmark_compare.py`` and
``scripts/benchmark_frontier.py`` both read their arguments this way.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from medcam_dicom.benchmark.names import RANKING_METHODS

#: the ranking methods' per-image areas a Med-CAM mask's size is compared with: the smallest top-k mask
#: keeping the decision, and the smallest keeping the target's probability at the full image's
FAITHFUL_AREA = "smallest_faithful_area"
PRESERVING_AREA = "smallest_preserving_area"


class RunNotFoundError(FileNotFoundError):
    """A named benchmark folder has no ``benchmark.json``."""


def read_run(folder: str | Path) -> dict[str, Any]:
    """The report one benchmark run wrote into ``folder``; :class:`RunNotFoundError` names the missing file."""
    path = Path(folder) / "benchmark.json"
    if not path.is_file():
        raise RunNotFoundError(f"{path} not found (a folder written by medcam-dicom benchmark --out)")
    return json.loads(path.read_text())


def pooled_run(spec: str) -> dict[str, Any]:
    """One report from ``DIR`` or ``DIR+DIR+...``: the first folder's settings, every folder's image rows
    and classifiers."""
    reports = [read_run(folder) for folder in spec.split("+")]
    pooled = dict(reports[0])
    pooled["images"] = [row for report in reports for row in report["images"]]
    pooled["datasets"] = {name: entry for report in reports for name, entry in report.get("datasets", {}).items()}
    return pooled


def run_name(spec: str) -> str:
    """The short name of ``DIR+DIR`` (the folders' last parts, joined by ``+``)."""
    return "+".join(Path(folder).name for folder in spec.split("+"))


def best_ranking_areas(images: Iterable[Mapping[str, Any]], key: str = FAITHFUL_AREA) -> dict[tuple[str, int], float]:
    """Per image (``(dataset, index)``): the smallest ``key`` area over every ranking method's rows - the
    minimality ratio's denominator. Images without such a row are left out."""
    best: dict[tuple[str, int], float] = {}
    for row in images:
        area = row.get(key)
        if row["method"] in RANKING_METHODS and area:
            image = (row["dataset"], int(row["index"]))
            best[image] = min(best.get(image, area), area)
    return best
