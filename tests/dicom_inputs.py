"""DICOM test inputs built from pydicom's bundled files (offline): single files, a geometric CT series
whose InstanceNumbers run against the slice order, and broken variants for the bad-input tests."""

from __future__ import annotations

import copy
import glob
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pydicom.data
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from medcam_dicom.models.description import load_description

#: a few Med-CAM steps: the tests check plumbing and formats, the benchmark checks the method
FAST = {"max_steps": 4, "min_steps": 2}


def bundled(name: str) -> Path:
    """A bundled pydicom test file (never fetched from the network)."""
    path = get_testdata_file(name, download=False)
    if path is None:
        found = glob.glob(os.path.join(os.path.dirname(pydicom.data.__file__), "**", name), recursive=True)
        if not found:
            raise FileNotFoundError(f"pydicom test file {name} is not bundled")
        path = found[0]
    return Path(path)


def copy_with_new_uids(name: str, folder: Path, filename: str | None = None, series_uid: str | None = None
                       ) -> Path:
    """A copy of a bundled file with fresh SOP/Series UIDs (so copies do not collide with the original)."""
    dataset = pydicom.dcmread(bundled(name))
    dataset.SOPInstanceUID = generate_uid()
    dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    dataset.SeriesInstanceUID = series_uid or generate_uid()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (filename or f"{name.replace('/', '_')}.dcm")
    dataset.save_as(path)
    return path


def ct_series(folder: Path, slices: int = 3, spacing: float = 2.5) -> list[Path]:
    """A CT series from CT_small: slice ``k`` sits at z0 + k * spacing, is shifted so that slices differ,
    and has InstanceNumber ``slices - k`` (the reverse of the geometric order). Files are named by
    InstanceNumber."""
    source = pydicom.dcmread(bundled("CT_small.dcm"))
    series_uid = generate_uid()
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(slices):
        dataset = copy.deepcopy(source)
        dataset.SeriesInstanceUID = series_uid
        dataset.SOPInstanceUID = generate_uid()
        dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
        position = [float(v) for v in source.ImagePositionPatient]
        position[2] += k * spacing
        dataset.ImagePositionPatient = position
        dataset.SliceLocation = position[2]
        dataset.InstanceNumber = slices - k
        pixels = np.roll(source.pixel_array, 7 * k, axis=1)
        dataset.PixelData = pixels.astype(source.pixel_array.dtype).tobytes()
        path = folder / f"instance-{slices - k:03d}.dcm"
        dataset.save_as(path)
        paths.append(path)
    return paths


def fast_description(name: str, **overrides):
    """A shipped description with few Med-CAM steps."""
    return load_description(name).with_medcam(**{**FAST, **overrides})


def copy_file(name: str, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / Path(name).name
    shutil.copy(bundled(name), target)
    return target


PIXELMED_JAR = Path("/usr/share/java/pixelmed.jar")


def pixelmed_sr_reports(paths: list[Path]) -> dict[Path, list[str]]:
    """The "Error" and "Warning" lines of pixelmed's DicomSRValidator (IHE AI Results' SR validator) for each
    SR file, all in one JVM (tests/java/ValidateSRs.java; pixelmed's own command line takes one file). The
    XPath limits are lifted because a recent JVM otherwise refuses pixelmed's expressions. About 2.5 s per SR
    in one JVM on these machines (a JVM per file: ~10 s each); the driver validates on one thread per core
    and prints the reports in the order given (the corpus's SRs: 107 s on one thread, 77 s on two)."""
    assert PIXELMED_JAR.exists(), "pixelmed missing: scripts/install-system.sh installs libpixelmed-java"
    limits = [f"-Djdk.xml.{name}=0" for name in ("xpathExprOpLimit", "xpathExprGrpLimit", "xpathTotalOpLimit")]
    driver = Path(__file__).resolve().parent / "java" / "ValidateSRs.java"
    run = subprocess.run(["java", *limits, "-cp", str(PIXELMED_JAR), str(driver), *map(str, paths)],
                         capture_output=True, text=True, errors="replace", timeout=60 + 30 * len(paths))
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    reports: dict[Path, list[str]] = {}
    current: list[str] = []
    for line in run.stdout.splitlines():
        if line.startswith("=== "):
            current = reports.setdefault(Path(line[4:]), [])
        else:
            current.append(line)
    assert set(reports) == set(paths), run.stdout[-2000:]
    for path, lines in reports.items():
        assert any(line.startswith("Found Root Template") for line in lines), (path, lines)
        reports[path] = [line for line in lines if line.startswith(("Error", "Warning"))]
    return reports


def dciodvfy_errors(path: Path) -> list[str]:
    """The "Error" lines dicom3tools' dciodvfy reports for one DICOM file."""
    assert shutil.which("dciodvfy"), "dicom3tools missing: scripts/install-system.sh installs it"
    # errors="replace": dciodvfy echoes text attributes in the file's character set (e.g. Latin-1)
    report = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, errors="replace", timeout=60)
    return [line for line in (report.stdout + report.stderr).splitlines() if line.startswith("Error")]
