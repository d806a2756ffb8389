"""The conformance corpus (issue 13) through `medcam-dicom explain` in one batch: every file of pydicom's
bundled test data and of pydicom-data, Secondary Captures made by dcmtk's img2dcm, and hostile files
(tests/hostile_files.py: truncated, flipped bytes, headers that lie, degenerate geometry, corrupt compressed
streams, memory bombs). Each series is explained or refused with a reason naming the file (and, where a
header is at fault, the tag), never an unexpected error, and no file stops the batch; the results are
validated: dciodvfy on every SEG and SR and a sample of the SCs, highdicom and dcmqi on every SEG, pixelmed
on a sample of the SRs."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import data_store  # pydicom-data
import highdicom as hd
import pydicom
import pydicom.data
import pytest

from medcam_dicom.cli import main
from tests.dicom_inputs import dciodvfy_errors, pixelmed_sr_reports
from tests.hostile_files import img2dcm_files, write_hostile_files

BUNDLED = Path(os.path.dirname(pydicom.data.__file__))
PYDICOM_DATA = Path(os.path.dirname(data_store.__file__)) / "data"
#: defects of the sources that the results must copy to stay attached to them: pydicom's dicomdir test files
#: use their Study Instance UID as Frame of Reference UID; old files have UIDs under no registered root
SOURCE_DEFECTS = ("StudyInstanceUID has same value as FrameOfReferenceUID", "Illegal root for UID")
TAG = r"\([0-9A-F]{4},[0-9A-F]{4}"

#: hostile file -> what must come of it: "explained" (with a note naming the tag, when given), or refused
#: with a reason naming the file and this tag; "either" where the decoder decides (garbled entropy-coded data
#: may still decode)
HOSTILE_OUTCOMES = {
    "rows-larger-than-data": "(7FE0,0010)", "columns-smaller-than-data": "(0028,0011)", "rows-zero": "(0028,0010)",
    "bits-allocated-32-on-16-bit-data": "(7FE0,0010)", "bits-allocated-12": "(0028,0100)",
    "bits-stored-above-allocated": "(0028,0101)", "frames-1000-on-one-frame": "(7FE0,0010)",
    "frames-zero": "explained", "samples-3-on-greyscale": "(0028,0006)", "photometric-unknown": "(0028,0004)",
    "rescale-slope-zero": "(0028,1053)", "palette-without-lut": "(0028,1101",
    "bomb-65535-squared": "(0028,0010)", "bomb-frames": "(0028,0010)", "bomb-jpeg2000-header": "(0028,0010)",
    "orientation-parallel-axes": "explained (0020,0037)", "position-nan": "explained (0020,0032)",
    "spacing-negative": "explained (0028,0030)", "spacing-huge": "explained",
    "jpeg-baseline-garbled": "either", "jpeg-lossless-garbled": "either", "jpeg-ls-garbled": "either",
    "jpeg2000-garbled": "either", "rle-garbled-header": "(7FE0,0010)",
    "truncated-10": "(7FE0,0010)", "truncated-50": "(7FE0,0010)", "truncated-99": "(7FE0,0010)",
    "byte-flips-0": "either", "byte-flips-1": "either", "byte-flips-2": "either", "byte-flips-3": "either",
    "empty": "skipped", "preamble-only": "(0008,0016)", "deflate-bomb": "(0002,0010)",
    "img2dcm-jpeg": "explained", "img2dcm-bmp-grey": "explained",
    "enhanced-frame-position-nan": "explained (0020,0032)", "enhanced-frame-orientation-zero": "explained (0020,0037)",
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, dict, dict[str, Path]]:
    made = tmp_path_factory.mktemp("corpus-made")
    hostile = {**write_hostile_files(made / "hostile"), **img2dcm_files(made / "img2dcm")}
    out = tmp_path_factory.mktemp("corpus")
    # --overlays all: every decision gets a SEG and SC, so that the writers meet every input
    code = main(["explain", "--out", str(out), "--max-steps", "4", "--overlays", "all", str(BUNDLED), str(PYDICOM_DATA),
                 str(made)])
    assert code in (0, 1)  # 1: some inputs were refused (listed in the summary)
    return out, json.loads((out / "summary.json").read_text()), hostile


def _series_of(path: Path) -> str | None:
    try:
        return str(pydicom.dcmread(path, stop_before_pixels=True).SeriesInstanceUID)
    except Exception:  # noqa: BLE001 - unreadable on purpose
        return None


def test_every_series_is_explained_or_refused_naming_the_file(corpus):
    _, summary, _ = corpus
    results = summary["results"]
    explained = [r for r in results if r["status"] == "explained"]
    failed = [r for r in results if r["status"] == "failed"]
    # 319 files: every series of pydicom's bundled data but one corrupt JPEG 2000 stream, every one of
    # pydicom-data (which repeats many of those series), the two img2dcm captures and the 15 hostile files
    # that still hold a usable image
    assert len(explained) >= 65, [(r["label"], r["reason"]) for r in failed]
    assert not [r for r in results if "unexpected" in (r["reason"] or "")], failed
    for result in failed:
        assert re.search(r"/[^/ ]+\.dcm", result["reason"]) and re.search(TAG, result["reason"]), result
    for path, reason in summary["failed_files"]:  # unreadable files: each with its reason and tag
        assert Path(path).exists() and re.search(TAG, reason), (path, reason)
    notes = [note for r in explained for note in r["notes"]]
    assert any("missing (Type 2): written empty" in note for note in notes)
    assert any("Frame of Reference UID (0020,0052) missing" in note for note in notes)
    assert any("read as a bare dataset" in note for note in notes)  # pydicom-data's OT-PAL-8-face: no preamble
    assert any("share one position" in note and "explained image by image" in note for note in notes)
    assert any("1.2.840.10008.5.1.4.1.1.6 is retired" in note for note in notes)  # pydicom-data's color-pl


def test_each_hostile_file_ends_as_expected(corpus):
    _, summary, hostile = corpus
    refusals = {path: reason for path, reason in summary["failed_files"]}
    refusals.update({re.search(r"(/\S+\.dcm)", r["reason"]).group(1): r["reason"]
                     for r in summary["results"] if r["status"] == "failed"})
    skipped = {path for path, _ in summary["skipped_files"]}
    explained = {r["series_uid"]: r for r in summary["results"] if r["status"] == "explained"}
    assert set(hostile) == set(HOSTILE_OUTCOMES)
    for name, path in hostile.items():
        expected, refusal = HOSTILE_OUTCOMES[name], refusals.get(str(path))
        if refusal is not None and expected not in ("either", "skipped") and not expected.startswith("explained"):
            assert expected in refusal, (name, refusal)  # reading it again would be the memory bomb itself
            continue
        result = explained.get(_series_of(path) or "")
        if expected == "either":
            assert (result is not None) != (refusal is not None), (name, refusal)
            assert refusal is None or re.search(TAG, refusal), (name, refusal)
        elif expected == "skipped":
            assert str(path) in skipped, name
        elif expected.startswith("explained"):
            assert result is not None and refusal is None, (name, refusal)
            tag = expected.removeprefix("explained").strip()
            assert not tag or any(note.startswith(path.name) and tag in note for note in result["notes"]), result
        else:
            assert result is None and refusal is not None and expected in refusal, (name, refusal)


def _outputs(out: Path, kind: str) -> list[Path]:
    return sorted(p for p in out.rglob(f"{kind}*.dcm") if p.name.startswith(kind))


def test_every_seg_and_sr_passes_dciodvfy_except_defects_of_the_source(corpus):
    out, _, _ = corpus
    files = _outputs(out, "SEG") + _outputs(out, "SR") + _outputs(out, "SC")[::5]
    assert len(files) >= 150
    errors = {}
    for path in files:
        found = [e for e in dciodvfy_errors(path) if not any(defect in e for defect in SOURCE_DEFECTS)]
        if found:
            errors[str(path.relative_to(out))] = found
    assert not errors, errors


def test_every_seg_is_read_by_highdicom_and_converted_by_dcmqi(corpus, tmp_path):
    out, _, _ = corpus
    tool = shutil.which("segimage2itkimage") or str(Path(sys.executable).parent / "segimage2itkimage")
    segs = _outputs(out, "SEG")
    assert len(segs) >= 90
    for number, path in enumerate(segs):
        hd.seg.segread(path)
        target = tmp_path / str(number)
        target.mkdir()
        run = subprocess.run([tool, "--inputDICOM", str(path), "--outputDirectory", str(target), "--outputType",
                              "nrrd"], capture_output=True, text=True, errors="replace", timeout=120)
        assert run.returncode == 0, (path, run.stdout[-500:] + run.stderr[-500:])


def test_every_sr_passes_pixelmeds_validator(corpus):
    """Every SR through pixelmed in one JVM (about 2.5 s per SR there; a JVM per file costs ~10 s each)."""
    out, _, _ = corpus
    reports = _outputs(out, "SR")
    assert len(reports) >= 65
    for path, lines in pixelmed_sr_reports(reports).items():
        errors = [line for line in lines if line.startswith("Error")]
        assert not errors, (path, errors)
