"""Example DICOM inputs that need no download: files bundled with pydicom (a CT slice, an MR slice, an RGB
ultrasound image), for ``medcam-dicom explain --examples`` and the quick-start demo."""

from __future__ import annotations

from pathlib import Path

from pydicom.data import get_testdata_file

EXAMPLE_FILES = ("CT_small.dcm", "MR_small.dcm", "examples_rgb_color.dcm")


def example_inputs() -> list[Path]:
    """Paths of the bundled example files; raises ``ValueError`` if this pydicom lacks one."""
    paths = []
    for name in EXAMPLE_FILES:
        path = get_testdata_file(name, download=False)
        if path is None:
            raise ValueError(f"pydicom's bundled example {name} is missing from this installation")
        paths.append(Path(path))
    return paths
