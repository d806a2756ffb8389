"""Every file of pydicom's bundled data through `medcam-dicom explain`: each series explained or refused
with a reason naming the file, never an unexpected error; the results validated (dciodvfy on every SEG and
SR and a sample of the SCs, highdicom and dcmqi on every SEG, pixelmed on a sample of the SRs). The first
part of issue 13's conformance corpus; pydicom-data and dcmtk-made images are still to come."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import highdicom as hd
import pydicom.data
import pytest

from medcam_dicom.cli import main
from tests.dicom_inputs import dciodvfy_errors, pixelmed_sr_report

CORPUS = Path(os.path.dirname(pydicom.data.__file__))
#: the source's own defect, copied with its Frame of Reference so the SEG stays aligned (pydicom's dicomdir
#: test files use their Study Instance UID as Frame of Reference UID)
SOURCE_DEFECTS = ("StudyInstanceUID has same value as FrameOfReferenceUID",)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("corpus")
    code = main(["explain", "--out", str(out), "--max-steps", "4", str(CORPUS)])
    assert code in (0, 1)  # 1: some inputs were refused (listed in the summary)
    return out, json.loads((out / "summary.json").read_text())


def test_every_series_is_explained_or_refused_naming_the_file(corpus):
    _, summary = corpus
    results = summary["results"]
    explained = [r for r in results if r["status"] == "explained"]
    failed = [r for r in results if r["status"] == "failed"]
    assert len(explained) >= 39, [(r["label"], r["reason"]) for r in failed]
    assert not [r for r in failed if "unexpected" in (r["reason"] or "")], failed
    for result in failed:  # e.g. the corrupt JPEG 2000 stream: the file and the tag
        assert str(CORPUS) in result["reason"], result
        assert re.search(r"\([0-9A-F]{4},[0-9A-F]{4}\)", result["reason"]), result
    for path, reason in summary["failed_files"]:  # unreadable files: each with its reason and tag
        assert Path(path).exists() and reason, (path, reason)
    notes = [note for r in explained for note in r["notes"]]
    assert any("missing (Type 2): written empty" in note for note in notes)
    assert any("Frame of Reference UID (0020,0052) missing" in note for note in notes)


def _outputs(out: Path, kind: str) -> list[Path]:
    return sorted(p for p in out.rglob(f"{kind}*.dcm") if p.name.startswith(kind))


def test_every_seg_and_sr_passes_dciodvfy_except_defects_of_the_source(corpus):
    out, _ = corpus
    files = _outputs(out, "SEG") + _outputs(out, "SR") + _outputs(out, "SC")[::5]
    assert len(files) >= 100
    errors = {}
    for path in files:
        found = [e for e in dciodvfy_errors(path) if not any(defect in e for defect in SOURCE_DEFECTS)]
        if found:
            errors[str(path.relative_to(out))] = found
    assert not errors, errors


def test_every_seg_is_read_by_highdicom_and_converted_by_dcmqi(corpus, tmp_path):
    out, _ = corpus
    tool = shutil.which("segimage2itkimage") or str(Path(sys.executable).parent / "segimage2itkimage")
    segs = _outputs(out, "SEG")
    assert len(segs) >= 60
    for number, path in enumerate(segs):
        hd.seg.segread(path)
        target = tmp_path / str(number)
        target.mkdir()
        run = subprocess.run([tool, "--inputDICOM", str(path), "--outputDirectory", str(target), "--outputType",
                              "nrrd"], capture_output=True, text=True, errors="replace", timeout=120)
        assert run.returncode == 0, (path, run.stdout[-500:] + run.stderr[-500:])


def test_a_sample_of_the_srs_passes_pixelmeds_validator(corpus):
    out, _ = corpus
    reports = _outputs(out, "SR")
    assert len(reports) >= 40
    for path in reports[::5]:
        errors = [line for line in pixelmed_sr_report(path) if line.startswith("Error")]
        assert not errors, (path, errors)
