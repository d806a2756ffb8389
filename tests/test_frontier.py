"""The pooled bounds of scripts/benchmark_frontier.py on rows whose answer is known by hand."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from medcam_dicom.benchmark.frontier import frontier

ROOT = Path(__file__).resolve().parents[1]


def _row(dataset, index, method, area, *, probability=0.99, masked=0.98, faithful=True, precision=None, iou=None,
         removed=0.9, smallest=None, preserving=None):
    return {"dataset": dataset, "index": index, "method": method, "area_fraction": area, "probability": probability,
            "masked_probability": masked, "faithful": faithful, "precision": precision, "iou": iou,
            "removed_probability": removed, "smallest_faithful_area": smallest, "smallest_preserving_area": preserving}


def _rows():
    return [
        # lesion decision 0: Med-CAM's mask is as convincing as the image at 0.008, below RISE's 0.01
        _row("ct", 0, "medcam", 0.008, masked=0.995, precision=1.0, iou=0.8, removed=0.4),
        _row("ct", 0, "rise", 0.008, precision=1.0, iou=0.8, smallest=0.01, preserving=0.04),
        # lesion decision 1: the finding is 0.03 (mask 0.02 at precision 0.5: IoU 0.25); nothing convincing
        # is smaller than 0.05, occlusion keeps the decision from 0.005
        _row("ct", 1, "medcam", 0.02, precision=0.5, iou=0.25, removed=0.2),
        _row("ct", 1, "occlusion", 0.02, precision=0.5, iou=0.25, smallest=0.005, preserving=0.05),
        _row("ct", 1, "rise", 0.004, precision=1.0, iou=0.1, removed=0.7, smallest=0.006),
        # a "normal" decision: no precision, not a lesion decision
        _row("ct", 2, "medcam", 0.0),
        _row("ct", 2, "rise", 0.0),
    ]


def test_frontier_counts_what_the_measured_masks_allow():
    pooled = frontier(_rows())
    assert pooled.decisions == 3 and len(pooled.bounds) == 2
    first, second = pooled.bounds
    assert first.decision_area == 0.01 and first.convincing_area == 0.008 and first.convincing_and_minimal
    assert second.decision_area == 0.005 and second.convincing_area == 0.05 and not second.convincing_and_minimal
    assert second.lesion_area == pytest.approx(0.03)
    assert second.small_removed == 0.7  # the 0.02 mask removes more but is larger than 0.005
    assert first.small_removed == 0.4
    # m>=p on 90 % of 3 decisions: 3 convincing, 2 of them lesion decisions; median minimality <= 1 on 2: 1
    assert pooled.needed_both == 1 and pooled.available_both == 1
    assert pooled.least_removed == pytest.approx(0.4 / 2)
    assert pooled.decision_to_lesion[1] == pytest.approx(0.005 / 0.03)
    assert any("need 1 lesion decisions" in line and "on 1" in line for line in pooled.lines())


def test_frontier_script_pools_folders_and_names_a_missing_one(tmp_path):
    for name, rows in (("a", _rows()[:2]), ("b", _rows()[2:])):
        (tmp_path / name).mkdir()
        (tmp_path / name / "benchmark.json").write_text(json.dumps({"images": rows}))
    script = str(ROOT / "scripts" / "benchmark_frontier.py")
    done = subprocess.run([sys.executable, script, f"{tmp_path / 'a'}+{tmp_path / 'b'}"], capture_output=True,
                          text=True, check=True)
    assert "decisions 3, lesion decisions 2" in done.stdout
    missing = subprocess.run([sys.executable, script, str(tmp_path / "nowhere")], capture_output=True, text=True)
    assert missing.returncode == 2 and "nowhere" in missing.stderr and "benchmark.json" in missing.stderr
