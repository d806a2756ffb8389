"""The pixel grid an image without patient geometry gets in our results (photographs, SC, CR/DX, ultrasound
cine): its own Frame of Reference, the identity orientation, the origin at the first pixel and the image's
pixel spacing (else 1 mm) — how viewers place such an image. highdicom builds SEG and Parametric Map
frames only from sources with a patient coordinate system, so those writers work from stand-ins: shallow
copies of the source (same SOP Instance UID, so the results reference the real image) carrying that grid."""

from __future__ import annotations

import copy
from collections.abc import Callable

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.valuerep import format_number_as_ds


def own_frame_of_reference_uid(source: Dataset, uid: Callable[..., str]) -> str:
    """The Frame of Reference of an image's own grid, ``uid`` being :meth:`OutputSettings.uid`: the same
    for the SEG and the Parametric Map of the image, and on every run."""
    return uid(source.SOPInstanceUID, "image frame of reference")


def pixel_measures(source: Dataset) -> Dataset:
    """Pixel Measures for a source without patient geometry: its (imager) pixel spacing when it has one,
    else 1 mm (its nominal pixel), and a 1 mm slice thickness."""
    measures = Dataset()
    spacing = source.get("PixelSpacing") or source.get("ImagerPixelSpacing") or [1, 1]
    measures.PixelSpacing = [format_number_as_ds(float(v)) for v in spacing]
    measures.SliceThickness = format_number_as_ds(float(source.get("SliceThickness") or 1.0))
    return measures


def multi_frame_with_own_grid(source: Dataset, frame_of_reference_uid: str) -> Dataset:
    """A stand-in for a multi-frame image without patient geometry (ultrasound cine, some enhanced MR)
    that highdicom accepts: a shallow copy with a Frame of Reference of its own and functional groups
    placing frame k at k slice thicknesses along the normal of the identity orientation, with the image's
    pixel spacing (else 1 mm). highdicom writes no SEG for a multi-frame source without a coordinate
    system; the SEG references the real image (same SOP Instance UID, frame numbers) and carries this
    grid, as a single-frame image's SEG carries its own (``write_seg``)."""
    proxy = copy.copy(source)
    proxy.FrameOfReferenceUID = frame_of_reference_uid
    proxy.PositionReferenceIndicator = ""
    measures = pixel_measures(source)
    thickness = float(measures.SliceThickness)
    shared = Dataset()
    shared.PixelMeasuresSequence = hd.PixelMeasuresSequence(
        [float(v) for v in measures.PixelSpacing], thickness, thickness
    )
    shared.PlaneOrientationSequence = hd.PlaneOrientationSequence(
        hd.CoordinateSystemNames.PATIENT, [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    )
    proxy.SharedFunctionalGroupsSequence = [shared]
    frames = []
    for k in range(int(source.get("NumberOfFrames", 1) or 1)):
        frame = Dataset()
        frame.PlanePositionSequence = hd.PlanePositionSequence(
            hd.CoordinateSystemNames.PATIENT, [0.0, 0.0, k * thickness]
        )
        frames.append(frame)
    proxy.PerFrameFunctionalGroupsSequence = frames
    return proxy


def with_own_grid(source: Dataset, frame_of_reference_uid: str) -> Dataset:
    """A stand-in for any image without patient geometry: multi-frame, see
    :func:`multi_frame_with_own_grid`; single-frame, the grid as top-level Image Plane attributes."""
    if int(source.get("NumberOfFrames", 1) or 1) > 1:
        return multi_frame_with_own_grid(source, frame_of_reference_uid)
    proxy = copy.copy(source)
    proxy.FrameOfReferenceUID = frame_of_reference_uid
    proxy.PositionReferenceIndicator = ""
    measures = pixel_measures(source)
    proxy.PixelSpacing = measures.PixelSpacing
    proxy.SliceThickness = measures.SliceThickness
    proxy.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    proxy.ImagePositionPatient = ["0", "0", "0"]
    return proxy
