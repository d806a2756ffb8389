"""Example DICOM inputs that need no download, for ``medcam-dicom explain --examples``, the quick-start
demo and the viewer screenshots: files bundled with pydicom (a CT slice, an MR slice, an RGB ultrasound
image: the demo models call them "normal", whose evidence is usually empty) and two generated images with a
synthetic lesion (a CT slice in HU and an RGB fundus photograph as Secondary Capture) whose evidence is the
lesion. :func:`write_ct_volume_series` writes a CT series of clinical size (200 slices of 512 x 512 by
default) with a planted finding, for the volume benchmark and the GPU check."""

from __future__ import annotations

import copy
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

EXAMPLE_FILES = ("CT_small.dcm", "MR_small.dcm", "examples_rgb_color.dcm")
#: index of the first lesion image of each benchmark set used for the generated examples
LESION_SEED = 7


def example_inputs() -> list[Path]:
    """Paths of the bundled example files; raises ``ValueError`` if this pydicom lacks one."""
    paths = []
    for name in EXAMPLE_FILES:
        path = get_testdata_file(name, download=False)
        if path is None:
            raise ValueError(f"pydicom's bundled example {name} is missing from this installation")
        paths.append(Path(path))
    return paths


def _lesion_image(dataset: str) -> np.ndarray:
    from medcam_dicom.data.synthetic import generate

    images = generate(dataset, 2, seed=LESION_SEED)
    return images.images[1].numpy()  # index 1: class "lesion"


def write_lesion_examples(folder: str | Path) -> list[Path]:
    """Write ``lesion-ct.dcm`` (CT, HU, CT_small's header and geometry, new UIDs) and
    ``lesion-fundus.dcm`` (RGB Secondary Capture) into ``folder``, each in a study of its own."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    template = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ct = copy.deepcopy(template)
    hounsfield = _lesion_image("ct")[0] * 400.0 - 160.0  # the demo CT model's window (40, 400)
    ct.StudyInstanceUID, ct.SeriesInstanceUID, ct.SOPInstanceUID = generate_uid(), generate_uid(), generate_uid()
    ct.FrameOfReferenceUID = generate_uid()
    ct.file_meta.MediaStorageSOPInstanceUID = ct.SOPInstanceUID
    ct.PatientName, ct.PatientID = "MEDCAM^DEMO^CT", "MEDCAM-DEMO-1"
    ct.SeriesDescription = "Synthetic lesion on CT (Med-CAM demo)"
    ct.StudyDescription = "Med-CAM demo CT"
    ct.RescaleSlope, ct.RescaleIntercept = 1, -1024
    ct.PixelRepresentation, ct.BitsAllocated, ct.BitsStored, ct.HighBit = 0, 16, 16, 15
    ct.WindowCenter, ct.WindowWidth = 40, 400
    ct.PixelData = np.clip(np.round(hounsfield + 1024), 0, 65535).astype(np.uint16).tobytes()
    ct_path = folder / "lesion-ct.dcm"
    ct.save_as(ct_path, enforce_file_format=True)
    fundus = (np.moveaxis(_lesion_image("fundus"), 0, -1) * 255).round().astype(np.uint8)
    capture = hd.sc.SCImage(
        pixel_array=fundus, photometric_interpretation="RGB", bits_allocated=8,
        coordinate_system="PATIENT", patient_orientation=("L", "F"), study_instance_uid=generate_uid(),
        series_instance_uid=generate_uid(),
        series_number=1, sop_instance_uid=generate_uid(), instance_number=1, manufacturer="medcam-dicom demo",
        patient_id="MEDCAM-DEMO-2", patient_name="MEDCAM^DEMO^FUNDUS", study_id="1", accession_number="",
        series_description="Synthetic lesion on a fundus photograph (Med-CAM demo)",
    )
    capture.PatientOrientation = ""  # a photograph: no orientation known (highdicom wants letters above)
    capture.Modality = "XC"  # external-camera photography (highdicom writes OT)
    fundus_path = folder / "lesion-fundus.dcm"
    capture.save_as(fundus_path, enforce_file_format=True)
    return [ct_path, fundus_path]


def write_ct_volume_series(
    folder: str | Path, slices: int = 200, size: int = 512, seed: int = LESION_SEED,
    pixel_spacing: float = 0.7, slice_spacing: float = 1.25,
) -> tuple[list[Path], np.ndarray]:
    """Write an axial CT series of ``slices`` images of ``size`` x ``size`` (HU, 16 bit, CT_small's header,
    new UIDs, one file per slice, ``slice-NNNN.dcm`` from feet to head) into ``folder``: the 3D benchmark's
    first lesion volume (real CT anatomy, a planted sphere) resampled to that grid. Returns the paths and
    the planted finding as a boolean array ``(slices, size, size)`` in the same order."""
    from scipy import ndimage

    from medcam_dicom.data.synthetic import generate

    if slices < 2 or size < 16:
        raise ValueError(f"a volume series needs at least 2 slices of 16 x 16, got {slices} of {size} x {size}")
    volumes = generate("ct3d", 2, seed=seed)
    source, lesion = volumes.images[1, 0].numpy(), volumes.lesions[1].numpy()
    zoom = (slices / source.shape[0], size / source.shape[1], size / source.shape[2])
    hounsfield = ndimage.zoom(source, zoom, order=1)[:slices, :size, :size] * 400.0 - 160.0
    finding = ndimage.zoom(lesion.astype(np.uint8), zoom, order=0)[:slices, :size, :size].astype(bool)
    stored = np.clip(np.round(hounsfield + 1024), 0, 65535).astype(np.uint16)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    template = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    study, series, frame_of_reference = generate_uid(), generate_uid(), generate_uid()
    paths = []
    for k in range(slices):
        ct = copy.deepcopy(template)
        ct.StudyInstanceUID, ct.SeriesInstanceUID, ct.SOPInstanceUID = study, series, generate_uid()
        ct.FrameOfReferenceUID = frame_of_reference
        ct.file_meta.MediaStorageSOPInstanceUID = ct.SOPInstanceUID
        ct.PatientName, ct.PatientID = "MEDCAM^DEMO^VOLUME", "MEDCAM-DEMO-3"
        ct.StudyDescription = "Med-CAM demo CT volume"
        ct.SeriesDescription = f"Synthetic lesion in a {slices}-slice CT volume (Med-CAM demo)"
        ct.SeriesNumber, ct.InstanceNumber = 1, k + 1
        ct.Rows = ct.Columns = size
        ct.PixelSpacing = [pixel_spacing, pixel_spacing]
        ct.SliceThickness = slice_spacing
        ct.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        z = -0.5 * slices * slice_spacing + k * slice_spacing
        ct.ImagePositionPatient = [-0.5 * size * pixel_spacing, -0.5 * size * pixel_spacing, z]
        ct.SliceLocation = z
        ct.RescaleSlope, ct.RescaleIntercept = 1, -1024
        ct.PixelRepresentation, ct.BitsAllocated, ct.BitsStored, ct.HighBit = 0, 16, 16, 15
        ct.WindowCenter, ct.WindowWidth = 40, 400
        ct.PixelData = stored[k].tobytes()
        path = folder / f"slice-{k + 1:04d}.dcm"
        ct.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths, finding
