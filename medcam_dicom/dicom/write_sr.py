"""The numbers that make a result checkable, as a TID 1500 Comprehensive 3D SR: per explained decision
the class, its probability on the full image and on the evidence alone, whether the decision held, and
the evidence's area, referencing the source images and the SEG segment."""

from __future__ import annotations

import highdicom as hd
from pydicom.dataset import Dataset

from medcam_dicom import __version__
from medcam_dicom.dicom import codes
from medcam_dicom.dicom.equipment import contributing_equipment, device_uid
from medcam_dicom.dicom.results import EvidenceMask, Producer
from medcam_dicom.dicom.series import ImageSeries
from medcam_dicom.dicom.settings import OutputSettings


def _segmentation_frame(segmentation: Dataset, segment_number: int, source: Dataset, frame_number: int) -> int:
    """The SEG frame (1-based) of ``segment_number`` derived from ``source`` (frame ``frame_number``)."""
    multi_frame = int(source.get("NumberOfFrames", 1) or 1) > 1
    shared = segmentation.SharedFunctionalGroupsSequence[0]
    for position, item in enumerate(segmentation.PerFrameFunctionalGroupsSequence, start=1):
        identification = item.get("SegmentIdentificationSequence") or shared.get("SegmentIdentificationSequence")
        if int(identification[0].ReferencedSegmentNumber) != segment_number:
            continue
        for derivation in item.DerivationImageSequence:
            for reference in derivation.SourceImageSequence:
                if reference.ReferencedSOPInstanceUID != source.SOPInstanceUID:
                    continue
                if not multi_frame or int(reference.get("ReferencedFrameNumber", 1)) == frame_number:
                    return position
    raise LookupError(f"no SEG frame for segment {segment_number} of {source.SOPInstanceUID} frame {frame_number}")


def _has_segment(segmentation: Dataset, class_index: int) -> bool:
    try:
        _segment_number(segmentation, class_index)
    except LookupError:
        return False
    return True


def _segment_number(segmentation: Dataset, class_index: int) -> int:
    """The SEG segment explaining class ``class_index`` (its type modifier names the class)."""
    for item in segmentation.SegmentSequence:
        modifiers = item.get("SegmentedPropertyTypeModifierCodeSequence") or []
        if any(codes.class_index(modifier) == class_index for modifier in modifiers):
            return int(item.SegmentNumber)
    raise LookupError(f"class {class_index} has no segment")


def _drop_segment_numbers_beside_frames(content: Dataset) -> None:
    """highdicom writes ReferencedSegmentNumber next to ReferencedFrameNumber in a SEG frame reference;
    the Image SOP Instance Reference macro forbids that (the frame already names its segment)."""
    for reference in content.get("ReferencedSOPSequence", []):
        if "ReferencedFrameNumber" in reference and "ReferencedSegmentNumber" in reference:
            del reference.ReferencedSegmentNumber
    for item in content.get("ContentSequence", []):
        _drop_segment_numbers_beside_frames(item)


# (concept code value, scheme) -> the code meaning the DICOM templates use, where highdicom's differs
_TEMPLATE_MEANINGS = {("121233", "DCM"): "Source image for segmentation"}


def _conform_to_templates(content: Dataset) -> None:
    """Two repairs of highdicom's encoding that pixelmed's ``DicomSRValidator`` (the validator IHE AI
    Results testing uses) reports: in a measurement group, TID 1419 row 1 relates (370129005, SCT,
    "Measurement Method") by HAS CONCEPT MOD, not CONTAINS (an error); and a concept name's code meaning
    follows the template's wording (a warning)."""
    for item in content.get("ContentSequence", []):
        names = item.get("ConceptNameCodeSequence") or []
        if names:
            code = names[0]
            if code.CodeValue == "370129005" and code.CodingSchemeDesignator == "SCT":
                item.RelationshipType = "HAS CONCEPT MOD"
            meaning = _TEMPLATE_MEANINGS.get((code.CodeValue, code.CodingSchemeDesignator))
            if meaning is not None:
                code.CodeMeaning = meaning
        _conform_to_templates(item)


def _measurements(item: EvidenceMask, algorithm: hd.sr.AlgorithmIdentification) -> list[hd.sr.Measurement]:
    """The numbers of one decision, each identifying the algorithm that produced it (TID 300 Measurement
    includes TID 4019 Algorithm Identification; the measurement group's templates do not)."""
    values = [
        (codes.PROBABILITY, item.explanation.probability),
        (codes.MASKED_PROBABILITY, item.explanation.masked_probability),
        (codes.AREA_FRACTION, item.area_fraction),
    ]
    if item.explanation.random_keep is not None:
        values.append((codes.RANDOM_KEEP, item.explanation.random_keep))
    return [hd.sr.Measurement(name=name, value=float(value), unit=codes.UNIT_RATIO, algorithm_id=algorithm)
            for name, value in values]


def build_report(
    series: ImageSeries,
    evidence: list[EvidenceMask],
    segmentations: list[Dataset],
    segment_groups: list[list[int]],
    producer: Producer,
    settings: OutputSettings,
) -> hd.sr.Comprehensive3DSR:
    """One SR for the series, one measurement group per explained decision."""
    reference = series.reference.dataset
    algorithm = hd.sr.AlgorithmIdentification(
        name=producer.algorithm_name,
        version=producer.algorithm_version,
        family=codes.ALGORITHM_FAMILY,
    )
    groups = []
    for number, item in enumerate(evidence, start=1):
        tracking = hd.sr.TrackingIdentifier(
            uid=settings.uid(series.content_key, producer.name, producer.fingerprint, "tracking", number),
            identifier=f"Med-CAM {item.class_name} #{number}"[:64],
        )
        evaluations = [
            hd.sr.QualitativeEvaluation(codes.FAITHFUL, codes.YES if item.explanation.faithful else codes.NO)
        ]
        if item.explanation.specific is not None:
            evaluations.append(
                hd.sr.QualitativeEvaluation(codes.SPECIFIC, codes.YES if item.explanation.specific else codes.NO)
            )
        common = dict(
            tracking_identifier=tracking,
            finding_type=codes.class_concept(item.class_index, item.class_name),
            method=codes.METHOD,
            measurements=_measurements(item, algorithm),
            qualitative_evaluations=evaluations,
        )
        seg_index = next((i for i, frames in enumerate(segment_groups) if item.frame_indices[0] in frames), None)
        if seg_index is not None and not _has_segment(segmentations[seg_index], item.class_index):
            seg_index = None  # a decision that is not a finding: in the SR, not drawn in the SEG
        if seg_index is None:  # no segment to point at: the decision's source images (every slice of a volume)
            sources = []
            for index in item.frame_indices:
                frame = series.frames[index]
                numbers = [frame.frame_number] if frame.instance.number_of_frames > 1 else None
                sources.append(hd.sr.SourceImageForMeasurementGroup.from_source_image(frame.instance.dataset, numbers))
            groups.append(hd.sr.MeasurementsAndQualitativeEvaluations(source_images=sources, **common))
            continue
        segmentation = segmentations[seg_index]
        segment = _segment_number(segmentation, item.class_index)
        if len(item.frame_indices) > 1:
            referenced = hd.sr.ReferencedSegment(
                segmentation.SOPClassUID,
                segmentation.SOPInstanceUID,
                segment,
                source_series=hd.sr.SourceSeriesForSegmentation(series.series_uid),
            )
            groups.append(
                hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(referenced_segment=referenced, **common)
            )
        else:
            frame = series.frames[item.frame_indices[0]]
            seg_frame = _segmentation_frame(segmentation, segment, frame.instance.dataset, frame.frame_number)
            numbers = [frame.frame_number] if frame.instance.number_of_frames > 1 else None
            source = hd.sr.SourceImageForSegmentation(
                frame.instance.dataset.SOPClassUID, frame.instance.sop_instance_uid, numbers
            )
            # built directly: highdicom's from_segmentation() fails when a SEG has a single segment
            # (its SegmentIdentificationSequence then sits in the shared functional groups)
            referenced = hd.sr.ReferencedSegmentationFrame(
                segmentation.SOPClassUID, segmentation.SOPInstanceUID, seg_frame, segment, source
            )
            groups.append(hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(referenced_segment=referenced, **common))
    observer = hd.sr.ObserverContext(
        observer_type=hd.sr.CodedConcept("121007", "DCM", "Device"),
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=device_uid(producer, settings),
            name=producer.algorithm_name,
            manufacturer_name=settings.manufacturer,
            model_name=producer.algorithm_name,
        ),
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=codes.PROCEDURE_REPORTED,
        imaging_measurements=groups,
    )
    for item in report:
        _drop_segment_numbers_beside_frames(item)
        _conform_to_templates(item)
    evidence_datasets = [instance.dataset for instance in series.instances] + list(segmentations)
    return hd.sr.Comprehensive3DSR(
        evidence=evidence_datasets,
        content=report,
        series_instance_uid=settings.uid(series.content_key, producer.name, producer.fingerprint, "SR series"),
        series_number=settings.series_number(reference.get("SeriesNumber"), "SR"),
        sop_instance_uid=settings.uid(series.content_key, producer.name, producer.fingerprint, "SR"),
        instance_number=1,
        manufacturer=settings.manufacturer,
        is_complete=True,
        series_description=settings.series_description("SR", reference.get("SeriesDescription")),
        content_qualification=settings.content_qualification,
        coding_schemes=[codes.CODING_SCHEME],
        software_versions=__version__,
        institution_name=settings.institution_name,
        contributing_equipment=[contributing_equipment(producer, settings)],
    )
