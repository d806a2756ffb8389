"""Evidence burned into pictures: a Secondary Capture series (RGB overlay, outline and the numbers)
for viewers that cannot show a SEG. One image per explained frame of a 2D model; for a volume, the key
slices of its evidence (:func:`key_frames`), never the whole stack."""

from __future__ import annotations

import math

import highdicom as hd
import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset
from skimage.segmentation import find_boundaries

from medcam_dicom import __version__
from medcam_dicom.dicom.appearance import segment_colour
from medcam_dicom.dicom.equipment import contributing_equipment
from medcam_dicom.dicom.results import EvidenceMask, Producer
from medcam_dicom.dicom.series import ImageSeries, patient_orientation
from medcam_dicom.dicom.settings import OutputSettings

OVERLAY_OPACITY = 0.5
MIN_SIDE = 512
MAX_SIDE = 2048


def display_frame(dataset: Dataset, pixels: np.ndarray) -> np.ndarray:
    """A frame ``(rows, columns, channels)`` as display RGB in [0, 1]: the dataset's first VOI window
    when it has one, else the 0.5-99.5 percentiles; colour frames as they are."""
    if pixels.shape[-1] == 3:
        return np.clip(pixels / 255.0, 0.0, 1.0)
    values = pixels[..., 0]
    center, width = dataset.get("WindowCenter"), dataset.get("WindowWidth")
    if center is not None and width is not None:
        center = float(
            center[0]
            if isinstance(center, (list, tuple)) or hasattr(center, "__len__") and not isinstance(center, str)
            else center
        )
        width = float(width[0] if hasattr(width, "__len__") and not isinstance(width, str) else width)
        low, high = center - width / 2.0, center + width / 2.0
    else:
        low, high = np.percentile(values, [0.5, 99.5])
    grey = np.clip((values - low) / max(float(high - low), 1e-6), 0.0, 1.0)
    return np.repeat(grey[..., None], 3, axis=-1)


def render_evidence(
    display: np.ndarray, layers: list[tuple[np.ndarray, tuple[int, int, int]]], lines: list[str]
) -> np.ndarray:
    """Draw each ``(mask, colour)`` at 50 % opacity with a solid outline over ``display`` (RGB in [0, 1]),
    upscaled so that text fits, and burn ``lines`` of text in the top-left corner. Returns uint8 RGB."""
    rows, columns = display.shape[:2]
    scale = max(1, math.ceil(MIN_SIDE / min(rows, columns)))
    scale = max(1, min(scale, MAX_SIDE // max(rows, columns)))
    picture = np.kron(display, np.ones((scale, scale, 1)))
    for mask, colour in layers:
        big = np.kron(mask.astype(np.uint8), np.ones((scale, scale), np.uint8)).astype(bool)
        tint = np.asarray(colour, dtype=np.float64) / 255.0
        picture[big] = (1 - OVERLAY_OPACITY) * picture[big] + OVERLAY_OPACITY * tint
        picture[find_boundaries(big, mode="inner")] = tint
    image = Image.fromarray((np.clip(picture, 0, 1) * 255).round().astype(np.uint8), mode="RGB")
    draw = ImageDraw.Draw(image)
    size = max(10, min(image.width, image.height) // 28)
    font = ImageFont.load_default(size=size)
    while size > 8 and max(draw.textlength(line, font=font) for line in lines) > 0.96 * image.width - 12:
        size -= 1
        font = ImageFont.load_default(size=size)
    y = 4
    for line in lines:
        box = draw.textbbox((6, y), line, font=font)
        draw.rectangle((box[0] - 3, box[1] - 2, box[2] + 3, box[3] + 2), fill=(0, 0, 0))
        draw.text((6, y), line, fill=(255, 255, 255), font=font)
        y = box[3] + 6
    return np.asarray(image)


def evidence_lines(items: list[EvidenceMask]) -> list[str]:
    """The burned-in text: what the picture is, then one line per explained class."""
    lines = ["AI-generated Med-CAM evidence - not for diagnosis"]
    for item in items:
        check = "decision kept" if item.explanation.faithful else "decision NOT kept"
        lines.append(
            f"{item.class_name}: p={item.explanation.probability:.3f}, on evidence "
            f"p={item.explanation.masked_probability:.3f} ({check}), area {100 * item.area_fraction:.1f}%"
        )
        if item.explanation.specific is False and item.explanation.random_keep is not None:
            lines.append(
                f"  CAUTION: {100 * item.explanation.random_keep:.0f}% of random regions of this size also keep "
                f"{item.class_name} - the marked area may not be the reason"
            )
    return lines


def key_frames(mask: np.ndarray, limit: int) -> list[int]:
    """The positions along the first axis of a volume's evidence ``mask`` ``(frames, rows, columns)`` that
    get a picture: every slice with evidence when there are at most ``limit``, else ``limit`` slices spread
    evenly through the evidence, the slice with the most evidence among them; the middle slice when the
    evidence is empty (the numbers still need a picture)."""
    if limit < 1:
        raise ValueError(f"the number of key slices must be >= 1, got {limit}")
    counts = mask.reshape(mask.shape[0], -1).sum(axis=1)
    present = np.flatnonzero(counts)
    if len(present) == 0:
        return [mask.shape[0] // 2]
    if len(present) <= limit:
        return present.tolist()
    chosen = {int(present[round(i)]) for i in np.linspace(0, len(present) - 1, limit)}
    peak = int(np.argmax(counts))
    if peak not in chosen:
        chosen.remove(min(chosen, key=lambda index: abs(index - peak)))
        chosen.add(peak)
    return sorted(chosen)


def build_secondary_captures(
    series: ImageSeries,
    pixels: np.ndarray,
    evidence: list[EvidenceMask],
    producer: Producer,
    settings: OutputSettings,
) -> list[hd.sc.SCImage]:
    """One RGB Secondary Capture per explained frame (2D) or key slice (volumes: at most
    ``settings.key_slices`` per explained class, see :func:`key_frames`), in frame order."""
    per_frame: dict[int, list[tuple[EvidenceMask, np.ndarray]]] = {}
    for item in evidence:
        positions = range(len(item.frame_indices))
        if len(item.frame_indices) > 1:
            positions = key_frames(np.asarray(item.mask), settings.key_slices)
        for position in positions:
            per_frame.setdefault(item.frame_indices[position], []).append((item, item.mask[position]))
    reference = series.reference.dataset
    series_uid = settings.uid(series.content_key, producer.name, producer.fingerprint, "SC series")
    images = []
    for number, frame_index in enumerate(sorted(per_frame), start=1):
        source = series.frames[frame_index]
        dataset = source.instance.dataset
        items = per_frame[frame_index]
        layers = [(mask, segment_colour(item.class_index)) for item, mask in items]
        picture = render_evidence(
            display_frame(dataset, pixels[frame_index]), layers, evidence_lines([item for item, _ in items])
        )
        orientation = patient_orientation(dataset)
        image = hd.sc.SCImage.from_ref_dataset(
            ref_dataset=dataset,
            pixel_array=picture,
            photometric_interpretation=hd.PhotometricInterpretationValues.RGB,
            bits_allocated=8,
            coordinate_system=hd.CoordinateSystemNames.PATIENT,
            series_instance_uid=series_uid,
            series_number=settings.series_number(reference.get("SeriesNumber"), "SC"),
            sop_instance_uid=settings.uid(series.content_key, producer.name, producer.fingerprint, "SC", frame_index),
            instance_number=number,
            manufacturer=settings.manufacturer,
            # highdicom insists on two orientation letters; sources without geometry get theirs (or an
            # empty PatientOrientation, allowed by the IOD) right below
            patient_orientation=orientation or ("L", "F"),
            transfer_syntax_uid="1.2.840.10008.1.2.1",
            series_description=settings.series_description("SC", reference.get("SeriesDescription")),
            software_versions=__version__,
            institution_name=settings.institution_name,
            contributing_equipment=[contributing_equipment(producer, settings)],
        )
        if orientation is None:
            source_orientation = dataset.get("PatientOrientation")
            image.PatientOrientation = list(source_orientation) if source_orientation else ""
        image.Laterality = dataset.get("Laterality", "")  # type 2C in General Series: copied, else empty
        image.BurnedInAnnotation = "YES"
        image.ImageComments = (
            f"Med-CAM evidence, model {producer.name}, source frame {source.frame_number} of {dataset.SOPInstanceUID}"[
                :10240
            ]
        )
        derivation = Dataset()
        derivation.ReferencedSOPClassUID = dataset.SOPClassUID
        derivation.ReferencedSOPInstanceUID = dataset.SOPInstanceUID
        if int(dataset.get("NumberOfFrames", 1) or 1) > 1:
            derivation.ReferencedFrameNumber = source.frame_number
        image.SourceImageSequence = [derivation]
        images.append(image)
    return images
