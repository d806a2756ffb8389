"""Benchmark runs read back and pooled (``DIR+DIR``), and scripts/benchmark_compare.py's minimality ratio
and precision gap on rows whose answer is known by hand."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from medcam_dicom.benchmark.pooled import (
    PRESERVING_AREA,
    RunNotFoundError,
    best_ranking_areas,
    pooled_run,
    run_name,
)

ROOT = Path(__file__).resolve().parents[1]


def _row(dataset, index, method, area, *, precision=None, iou=None, smallest=None, preserving=None, faithful=True):
    return {"dataset": dataset, "index": index, "method": method, "area_fraction": area, "probability": 0.9,
            "masked_probability": 0.95, "faithful": faithful, "precision": precision, "iou": iou,
            "smallest_faithful_area": smallest, "smallest_preserving_area": preserving}


def _write(folder: Path, rows: list[dict], dataset: str, warm_start: str = "occlusion") -> Path:
    folder.mkdir()
    report = {"config": {"warm_start": warm_start}, "datasets": {dataset: {}}, "images": rows}
    (folder / "benchmark.json").write_text(json.dumps(report))
    return folder


@pytest.fixture
def runs(tmp_path):
    """Two halves of one run (classifiers ``ct/cnn`` and ``mr/cnn``), and a second setting on ``ct/cnn``."""
    first = _write(tmp_path / "a", [
        # Med-CAM 0.02, RISE keeps the decision from 0.01 and occlusion from 0.04: ratio 2; precision 0.8 vs
        # RISE's 0.6 at equal area: +0.2
        _row("ct/cnn", 0, "medcam", 0.02, precision=0.8, iou=0.5),
        _row("ct/cnn", 0, "rise", 0.02, precision=0.6, iou=0.4, smallest=0.01, preserving=0.03),
        _row("ct/cnn", 0, "occlusion", 0.02, precision=0.5, iou=0.3, smallest=0.04, preserving=0.02),
    ], "ct/cnn")
    second = _write(tmp_path / "b", [
        # ratio 0.5 against RISE's 0.02; precision 0.9 vs 0.7: +0.2
        _row("mr/cnn", 0, "medcam", 0.01, precision=0.9, iou=0.6),
        _row("mr/cnn", 0, "rise", 0.01, precision=0.7, iou=0.5, smallest=0.02),
        # a "normal" decision: no precision, an empty mask keeps it
        _row("mr/cnn", 1, "medcam", 0.0),
        _row("mr/cnn", 1, "rise", 0.0, smallest=0.0),
    ], "mr/cnn")
    other = _write(tmp_path / "c", [
        # another setting on ct/cnn, run with Grad-CAM too: it keeps the decision from 0.008, the best of all
        # runs on this image (ratio 0.004 / 0.008 here, 0.02 / 0.008 for the first run)
        _row("ct/cnn", 0, "medcam", 0.004, precision=1.0, iou=0.2),
        _row("ct/cnn", 0, "rise", 0.004, precision=1.0, iou=0.1, smallest=0.01),
        _row("ct/cnn", 0, "gradcam", 0.004, precision=0.5, iou=0.1, smallest=0.008),
    ], "ct/cnn", warm_start="none")
    return first, second, other


def test_pooled_run_joins_folders_and_names_a_missing_one(runs, tmp_path):
    first, second, _ = runs
    pooled = pooled_run(f"{first}+{second}")
    assert len(pooled["images"]) == 7 and set(pooled["datasets"]) == {"ct/cnn", "mr/cnn"}
    assert pooled["config"] == {"warm_start": "occlusion"}
    assert run_name(f"{first}+{second}") == "a+b"
    with pytest.raises(RunNotFoundError, match="nowhere/benchmark.json"):
        pooled_run(f"{first}+{tmp_path / 'nowhere'}")


def test_best_ranking_areas_take_the_smallest_over_ranking_methods_and_runs(runs):
    rows = [row for folder in runs for row in pooled_run(str(folder))["images"]]
    best = best_ranking_areas(rows)
    # the Med-CAM rows carry no smallest area; an area of 0 (a "normal" decision) is not a denominator
    assert best == {("ct/cnn", 0): 0.008, ("mr/cnn", 0): 0.02}
    assert best_ranking_areas(rows, PRESERVING_AREA) == {("ct/cnn", 0): 0.02}


def test_compare_script_prints_ratio_and_gap_per_run(runs):
    first, second, other = runs
    script = str(ROOT / "scripts" / "benchmark_compare.py")
    done = subprocess.run([sys.executable, script, f"{first}+{second}", str(other)], capture_output=True,
                          text=True, check=True)
    table = {tuple(cells[:2]): cells for cells in (line.split(" | ") for line in done.stdout.splitlines())
             if len(cells) > 2}
    header = table[("run", "method")]
    pooled, setting = table[("a+b", "medcam")], table[("c", "medcam")]
    ratio = header.index("min ratio")
    # medians of (2.5, 0.5) and (0.5,): the denominators pool every run's ranking rows
    assert pooled[ratio] == "1.50" and setting[ratio] == "0.50"
    # against its most precise ranking method at equal area (RISE): +0.2 on both images
    assert pooled[header.index("precision gap")].startswith("+0.200 [+0.200, +0.200] vs rise")
    assert "2 classifiers" in done.stdout and '"warm_start": "none"' in done.stdout
    missing = subprocess.run([sys.executable, script, str(Path(first).parent / "nowhere")], capture_output=True,
                             text=True)
    assert missing.returncode == 2 and "nowhere" in missing.stderr and "benchmark.json" in missing.stderr
