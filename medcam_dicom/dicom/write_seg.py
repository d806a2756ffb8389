"""Evidence masks as DICOM Segmentation (BINARY, one segment per explained class) with highdicom."""

from __future__ import annotations

import highdicom as hd
import numpy as np
from highdicom.spatial import get_image_coordinate_system
from pydicom.dataset import Dataset
from pydicom.valuerep import format_number_as_ds

from medcam_dicom import __version__
from medcam_dicom.dicom import codes
from medcam_dicom.dicom.appearance import segment_colour
from medcam_dicom.dicom.equipment import contributing_equipment
from medcam_dicom.dicom.own_grid import multi_frame_with_own_grid, own_frame_of_reference_uid, pixel_measures
from medcam_dicom.dicom.results import EvidenceMask, Producer
from medcam_dicom.dicom.series import ImageSeries, patient_orientation
from medcam_dicom.dicom.settings import OutputSettings


def algorithm_identification(producer: Producer) -> hd.AlgorithmIdentificationSequence:
    """Who produced the evidence: Med-CAM (family Artificial Intelligence) with the model's name."""
    return hd.AlgorithmIdentificationSequence(
        name=producer.algorithm_name,
        family=codes.ALGORITHM_FAMILY,
        version=producer.algorithm_version,
        source="medcam-dicom",
    )


def _add_image_plane_geometry(segmentation: Dataset, source: Dataset, frame_of_reference_uid: str) -> None:
    """Give a SEG of an image without patient geometry (photograph, SC, CR/DX) the pixel grid of the image
    itself: its own Frame of Reference, the identity orientation, the origin at the first pixel and the
    image's pixel spacing (else 1 mm) — exactly how viewers place such an image. highdicom writes no
    plane or pixel measures in that case, and OHIF's SEG viewport cannot display a SEG without them."""
    segmentation.FrameOfReferenceUID = frame_of_reference_uid
    segmentation.PositionReferenceIndicator = ""
    shared = segmentation.SharedFunctionalGroupsSequence[0]
    shared.PixelMeasuresSequence = [pixel_measures(source)]
    orientation = Dataset()
    orientation.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    shared.PlaneOrientationSequence = [orientation]
    for frame in segmentation.PerFrameFunctionalGroupsSequence:
        position = Dataset()
        position.ImagePositionPatient = ["0", "0", "0"]
        frame.PlanePositionSequence = [position]


def class_masks(series: ImageSeries, evidence: list[EvidenceMask], soft: bool = False) -> dict[int, np.ndarray]:
    """Per explained class, a ``(frames, rows, columns)`` mask over the whole series (empty where the class
    was not explained): the binary evidence, or with ``soft`` the evidence's soft masks (float32, the
    largest where two overlap; they must have been kept, see ``explain_frames(keep_soft=True)``)."""
    rows, columns = series.shape
    masks: dict[int, np.ndarray] = {}
    for item in evidence:
        full = masks.setdefault(item.class_index, np.zeros((len(series.frames), rows, columns),
                                                           dtype=np.float32 if soft else bool))
        if not soft:
            full[list(item.frame_indices)] |= item.mask
        elif item.soft_mask is None:
            raise ValueError("soft masks were not kept: explain with keep_soft=True")
        else:
            full[list(item.frame_indices)] = np.maximum(full[list(item.frame_indices)], item.soft_mask)
    return masks


def segmentation_groups(series: ImageSeries) -> list[list[int]]:
    """Which frames share one SEG object: highdicom needs one multi-frame source per SEG; single-frame
    images with patient geometry share one SEG per image orientation (a localizer series has three; images
    repeated at one position go to further SEGs), and without a patient coordinate system each image gets a
    SEG of its own."""
    by_instance: dict[str, list[int]] = {}
    for index, frame in enumerate(series.frames):
        by_instance.setdefault(frame.instance.sop_instance_uid, []).append(index)
    groups = list(by_instance.values())
    multi_frame = any(len(group) > 1 for group in groups)
    if get_image_coordinate_system(series.reference.dataset) is not None and not multi_frame:
        # per orientation, and within it as few SEGs as keep every plane position once (highdicom refuses
        # two frames at one position: an image sent twice under new UIDs, repeated scouts)
        by_orientation: dict[tuple[float, ...], list[tuple[set[tuple[float, ...]], list[int]]]] = {}
        for index, frame in enumerate(series.frames):
            dataset = frame.instance.dataset
            orientation = tuple(round(float(v), 3) for v in dataset.get("ImageOrientationPatient") or ())
            position = tuple(round(float(v), 3) for v in dataset.get("ImagePositionPatient") or ())
            subgroups = by_orientation.setdefault(orientation, [])
            free = next((group for group in subgroups if position not in group[0]), None)
            if free is None:
                free = (set(), [])
                subgroups.append(free)
            free[0].add(position)
            free[1].append(index)
        return [indices for subgroups in by_orientation.values() for _, indices in subgroups]
    return groups


def build_segmentations(
    series: ImageSeries,
    evidence: list[EvidenceMask],
    class_names: tuple[str, ...],
    producer: Producer,
    settings: OutputSettings,
) -> tuple[list[hd.seg.Segmentation], list[list[int]], list[str]]:
    """The SEG objects of a series, the frame indices each covers, and notes for the result (which SEG is
    on an image's own pixel grid)."""
    masks = class_masks(series, evidence)
    if not masks:
        return [], [], []
    explained = sorted(masks)
    algorithm = algorithm_identification(producer)
    descriptions = []
    for number, index in enumerate(explained, start=1):
        description = hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=f"Med-CAM evidence: {class_names[index]}"[:64],
            segmented_property_category=codes.SEGMENT_CATEGORY,
            segmented_property_type=codes.SEGMENT_TYPE,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
            tracking_uid=settings.uid(series.content_key, producer.name, producer.fingerprint, "segment", index),
            tracking_id=f"Med-CAM evidence {class_names[index]}"[:64],
            display_color=hd.color.CIELabColor.from_rgb(*segment_colour(index)),
        )
        # which decision the saliency explains: the class, as the type's modifier
        description.SegmentedPropertyTypeModifierCodeSequence = [codes.class_concept(index, class_names[index])]
        descriptions.append(description)
    groups = segmentation_groups(series)
    reference = series.reference.dataset
    segmentations = []
    notes = []
    for group_number, frames in enumerate(groups, start=1):
        sources = series.source_datasets(frames)
        own_grid = get_image_coordinate_system(sources[0]) is None  # no patient geometry: the image's own
        own_frame_of_reference = own_frame_of_reference_uid(sources[0], settings.uid)
        if own_grid and len(frames) > 1:
            sources = [multi_frame_with_own_grid(sources[0], own_frame_of_reference)]
            notes.append(
                f"SEG-{group_number}: multi-frame image without patient geometry; the SEG has the image's own "
                "pixel grid (a Frame of Reference of its own, frame k at k slice thicknesses)"
            )
        pixels = np.stack([masks[index][frames] for index in explained], axis=-1)
        identity = (series.content_key, producer.name, producer.fingerprint, "SEG", group_number)
        segmentation = hd.seg.Segmentation(
            source_images=sources,
            pixel_array=pixels,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=descriptions,
            series_instance_uid=settings.uid(series.content_key, producer.name, producer.fingerprint, "SEG series"),
            series_number=settings.series_number(reference.get("SeriesNumber"), "SEG"),
            sop_instance_uid=settings.uid(*identity),
            instance_number=group_number,
            manufacturer=settings.manufacturer,
            manufacturer_model_name=producer.algorithm_name,
            software_versions=__version__,
            device_serial_number="0",
            content_description="AI-generated Med-CAM evidence (minimal mask that keeps the decision)"[:64],
            content_label="MEDCAM_EVIDENCE",
            omit_empty_frames=False,
            series_description=settings.series_description("SEG", reference.get("SeriesDescription")),
            content_qualification=settings.content_qualification,
            coding_schemes=[codes.CODING_SCHEME],
            institution_name=settings.institution_name,
            contributing_equipment=[contributing_equipment(producer, settings)],
        )
        if series.is_volume and series.spacing is not None:
            # each SEG voxel stands for the slab between neighbouring slice positions, so its thickness is the
            # slice spacing: dcmqi (3D Slicer) steps by SliceThickness and would stretch the SEG of an
            # overlapping or gapped reconstruction. Set after construction: highdicom copies the source's
            # pixel measures whenever the pixel spacing is unchanged.
            measures = segmentation.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
            measures.SliceThickness = format_number_as_ds(series.spacing[0])
            measures.SpacingBetweenSlices = format_number_as_ds(series.spacing[0])
        if own_grid and len(frames) == 1:  # highdicom wrote no (or partial) pixel measures
            _add_image_plane_geometry(segmentation, sources[0], own_frame_of_reference)
        measures = segmentation.SharedFunctionalGroupsSequence[0].get("PixelMeasuresSequence")
        if measures and not measures[0].get("SliceThickness"):  # Type 2 in CT and MR: present but empty
            measures[0].SliceThickness = measures[0].get("SpacingBetweenSlices") or "1"
            notes.append(
                f"SEG-{group_number}: Slice Thickness (0018,0050) empty in the source; the SEG gives "
                f"{measures[0].SliceThickness} mm (Pixel Measures need one)"
            )
        if "PatientOrientation" not in segmentation:  # type 2C in General Image; dciodvfy asks for it
            orientation = patient_orientation(sources[0])
            segmentation.PatientOrientation = list(orientation) if orientation else ""
        segmentations.append(segmentation)
    return segmentations, groups, notes
