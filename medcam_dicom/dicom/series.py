"""Assembling a series: which frames it has, in which order a model sees them, and its geometry.

A stack of single-frame slices with Image Position/Orientation (Patient) is a **volume**, sorted along
the slice normal (never by InstanceNumber). Other series are lists of 2D frames: multi-frame instances in
stored frame order, several single-frame images (CR, US, photographs) by InstanceNumber.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset

from medcam_dicom.dicom.errors import DicomInputError
from medcam_dicom.dicom.pixels import decode_frames, is_colour
from medcam_dicom.dicom.read import Instance


@dataclass(frozen=True)
class SourceFrame:
    """One 2D frame of the series: the instance it lives in and its 1-based frame number there."""

    instance: Instance
    frame_number: int


@dataclass
class ImageSeries:
    """The frames of one series in model order, with geometry.

    ``spacing`` is ``(row, column)`` in mm for 2D frames and ``(slice, row, column)`` for a volume, or
    ``None`` when the files do not say.
    """

    series_uid: str
    instances: list[Instance]
    frames: list[SourceFrame]
    is_volume: bool
    spacing: tuple[float, ...] | None
    #: why the images, though they have patient geometry, do not form a volume (two at one position):
    #: a 2D model explains them image by image, a 3D model refuses the series with this error
    not_a_volume: DicomInputError | None = None

    @property
    def reference(self) -> Instance:
        """The first instance (its patient/study modules are copied into the results)."""
        return self.frames[0].instance

    @property
    def modality(self) -> str:
        return str(self.reference.dataset.get("Modality", "") or "")

    @property
    def colour(self) -> bool:
        return is_colour(self.reference.dataset)

    @property
    def frame_of_reference_uid(self) -> str | None:
        value = self.reference.dataset.get("FrameOfReferenceUID")
        return None if value is None else str(value)

    @property
    def shape(self) -> tuple[int, int]:
        dataset = self.reference.dataset
        return int(dataset.Rows), int(dataset.Columns)

    @property
    def content_key(self) -> str:
        """The series UID plus a hash of its SOP Instance UIDs: results of the same series with other
        instances (a study re-sent with more slices) must not reuse the UIDs of an earlier result."""
        digest = hashlib.sha256("\n".join(sorted(i.sop_instance_uid for i in self.instances)).encode())
        return f"{self.series_uid}/{digest.hexdigest()[:16]}"

    def source_datasets(self, frame_indices: list[int]) -> list[Dataset]:
        """The datasets the frames at ``frame_indices`` come from, each once, in frame order (what a SEG
        or Parametric Map over those frames references)."""
        datasets: list[Dataset] = []
        for index in frame_indices:
            dataset = self.frames[index].instance.dataset
            if not datasets or datasets[-1] is not dataset:
                datasets.append(dataset)
        return datasets

    def describe(self) -> str:
        """A short human label: modality, series number and description, or the first file's name where the
        series has no number."""
        dataset = self.reference.dataset
        description = str(dataset.get("SeriesDescription", "") or "").strip()
        number = dataset.get("SeriesNumber")
        label = f"{self.modality or 'image'} series {number if number not in (None, '') else self.reference.path.name}"
        return f"{label} '{description}'" if description else label

    def pixels(self, max_pixels: int | None = None) -> np.ndarray:
        """Every frame as float32 ``(frames, rows, columns, channels)``, in :attr:`frames` order."""
        rows, columns = self.shape
        if max_pixels is not None and len(self.frames) * rows * columns > max_pixels:
            raise DicomInputError(
                self.reference.path,
                f"series of {len(self.frames)} frames x Rows (0028,0010) x Columns (0028,0011) = {len(self.frames)} x "
                f"{rows} x {columns} pixels exceeds the configured limit of {max_pixels}",
            )
        decoded: dict[str, np.ndarray] = {}
        stacked = []
        for frame in self.frames:
            uid = frame.instance.sop_instance_uid
            if uid not in decoded:
                decoded[uid] = decode_frames(frame.instance.dataset, frame.instance.path, max_pixels)
            stacked.append(decoded[uid][frame.frame_number - 1])
        return np.stack(stacked)


def _orientation(instance: Instance) -> np.ndarray | None:
    value = instance.dataset.get("ImageOrientationPatient")
    if value is None or len(value) != 6:
        return None
    return np.asarray([float(v) for v in value])


def _position(instance: Instance) -> np.ndarray | None:
    value = instance.dataset.get("ImagePositionPatient")
    if value is None or len(value) != 3:
        return None
    return np.asarray([float(v) for v in value])


def _pixel_spacing(instance: Instance) -> tuple[float, float] | None:
    value = instance.dataset.get("PixelSpacing") or instance.dataset.get("ImagerPixelSpacing")
    if value is None or len(value) != 2:
        return None
    return float(value[0]), float(value[1])


def _instance_number(instance: Instance) -> tuple[int, str]:
    number = instance.dataset.get("InstanceNumber")
    try:
        return int(number), instance.sop_instance_uid
    except (TypeError, ValueError):
        return 0, instance.sop_instance_uid


def patient_orientation(dataset: Dataset) -> tuple[str, str] | None:
    """PatientOrientation letters (row, column direction) from ImageOrientationPatient, if present."""
    value = dataset.get("ImageOrientationPatient")
    if value is None or len(value) != 6:
        return None
    letters = (("L", "R"), ("P", "A"), ("H", "F"))

    def direction(vector: list[float]) -> str:
        axis = int(np.argmax(np.abs(vector)))
        return letters[axis][0] if vector[axis] > 0 else letters[axis][1]

    return direction([float(v) for v in value[:3]]), direction([float(v) for v in value[3:]])


def _size(instance: Instance) -> tuple[int, int]:
    return int(instance.dataset.get("Rows", 0) or 0), int(instance.dataset.get("Columns", 0) or 0)


def _check_belong_together(instances: list[Instance]) -> None:
    """Refuse a series that mixes colour and grey-scale images or frames of reference (naming the file)."""
    first = instances[0]
    for instance in instances[1:]:
        if is_colour(instance.dataset) != is_colour(first.dataset):
            raise DicomInputError(
                instance.path, "series mixes colour and grey-scale images (Photometric Interpretation (0028,0004))"
            )
    frames_of_reference = {str(i.dataset.get("FrameOfReferenceUID", "")) for i in instances}
    if len(frames_of_reference) > 1:
        raise DicomInputError(
            first.path,
            "series mixes frames of reference (FrameOfReferenceUID (0020,0052): "
            f"{', '.join(sorted(v or 'none' for v in frames_of_reference))})",
        )


def mixed_size_error(part: Instance, first: Instance) -> DicomInputError:
    """The error for an image whose size differs from the series' first image."""
    rows, columns = _size(first)
    size = _size(part)
    return DicomInputError(
        part.path,
        f"series mixes image sizes: Rows x Columns {size[0]} x {size[1]} here, {rows} x {columns} in {first.path.name}",
    )


def split_by_size(instances: list[Instance]) -> list[list[Instance]]:
    """The instances of one series grouped by Rows x Columns, the group of the first instance first (a
    series of scouts and captures of several sizes, explained image by image). Raises
    :class:`DicomInputError` for a series that mixes colour and grey-scale or frames of reference."""
    if not instances:
        raise ValueError("a series needs at least one instance")
    _check_belong_together(instances)
    groups: dict[tuple[int, int], list[Instance]] = {}
    for instance in instances:
        groups.setdefault(_size(instance), []).append(instance)
    return list(groups.values())


def assemble_series(instances: list[Instance]) -> ImageSeries:
    """Order the instances of one series into frames, checking that they belong together.

    Raises :class:`DicomInputError` naming the offending file for mixed sizes (:func:`split_by_size`
    first for a series that may mix them), mixed colour/grey-scale or mixed frames of reference. Images
    with geometry but two at one position (the same image sent twice under new UIDs, repeated scouts) are
    ordered by Instance Number and are not a volume, see :attr:`ImageSeries.not_a_volume`.
    """
    if not instances:
        raise ValueError("a series needs at least one instance")
    first = instances[0]
    for instance in instances[1:]:
        if _size(instance) != _size(first):
            raise mixed_size_error(instance, first)
    _check_belong_together(instances)
    series_uid = str(first.dataset.SeriesInstanceUID)
    single_frame = all(i.number_of_frames == 1 for i in instances)
    orientations = [_orientation(i) for i in instances]
    positions = [_position(i) for i in instances]
    geometric = (
        len(instances) > 1
        and single_frame
        and all(o is not None for o in orientations)
        and all(p is not None for p in positions)
        and all(np.allclose(o, orientations[0], atol=1e-3) for o in orientations)
    )
    if geometric:
        normal = np.cross(orientations[0][:3], orientations[0][3:])
        distances = np.array([float(np.dot(p, normal)) for p in positions])
        order = np.argsort(distances, kind="stable")
        ordered = [instances[i] for i in order]
        gaps = np.diff(distances[order])
        if not np.any(gaps < 1e-4):
            pixel = _pixel_spacing(first)
            spacing = (float(np.median(gaps)),) + pixel if pixel else None
            frames = [SourceFrame(instance, 1) for instance in ordered]
            return ImageSeries(series_uid, ordered, frames, True, spacing)
        duplicate = ordered[int(np.argmin(gaps)) + 1]
        not_a_volume = DicomInputError(
            duplicate.path,
            f"two images of the series share one position along the slice normal (ImagePositionPatient "
            f"(0020,0032)), here and in {ordered[int(np.argmin(gaps))].path.name}: not a volume",
        )
    else:
        not_a_volume = None
    ordered = sorted(instances, key=_instance_number)
    frames = [
        SourceFrame(instance, number) for instance in ordered for number in range(1, instance.number_of_frames + 1)
    ]
    return ImageSeries(series_uid, ordered, frames, False, _pixel_spacing(first), not_a_volume)
