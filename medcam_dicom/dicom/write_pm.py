"""The explainer's soft mask as a DICOM Parametric Map (optional, ``OutputSettings.parametric_map``): the
mask probability of every source pixel for one explained class, quantity DCM 130404 "Saliency" (CID 217),
for viewers that show heat maps. The SEG is the checked, binary evidence; the map shows how sure the
explainer was around it."""

from __future__ import annotations

import highdicom as hd
import numpy as np
from highdicom.spatial import get_image_coordinate_system

from medcam_dicom import __version__
from medcam_dicom.dicom import codes
from medcam_dicom.dicom.equipment import contributing_equipment
from medcam_dicom.dicom.own_grid import own_frame_of_reference_uid, with_own_grid
from medcam_dicom.dicom.results import EvidenceMask, Producer
from medcam_dicom.dicom.series import ImageSeries, patient_orientation
from medcam_dicom.dicom.settings import OutputSettings
from medcam_dicom.dicom.write_seg import class_masks

#: stored values 0..65535 stand for mask probabilities 0..1
STORED_MAX = 65535
#: the window a viewer opens the map with: probability 0 black, 1 white
WHOLE_RANGE = hd.VOILUTTransformation(window_center=STORED_MAX / 2, window_width=STORED_MAX)


def _saliency_mapping() -> hd.pm.RealWorldValueMapping:
    return hd.pm.RealWorldValueMapping(
        lut_label="SALIENCY",
        lut_explanation="Med-CAM mask probability",
        unit=codes.UNIT_RATIO,
        value_range=(0, STORED_MAX),
        slope=1.0 / STORED_MAX,
        intercept=0.0,
        quantity_definition=codes.SEGMENT_TYPE,
    )


def build_parametric_maps(
    series: ImageSeries,
    evidence: list[EvidenceMask],
    groups: list[list[int]],
    producer: Producer,
    settings: OutputSettings,
) -> list[hd.pm.ParametricMap]:
    """One Parametric Map per explained class and per group of frames of the SEGs (``groups``, from
    :func:`~medcam_dicom.dicom.write_seg.build_segmentations`), on the same grid as the SEG: the soft mask
    where the class was explained, 0 elsewhere. Needs the evidence's ``soft_mask``."""
    soft = class_masks(series, evidence, soft=True)
    reference = series.reference.dataset
    maps = []
    for class_index in sorted(soft):
        name = next(item.class_name for item in evidence if item.class_index == class_index)
        for group_number, frames in enumerate(groups, start=1):
            sources = series.source_datasets(frames)
            if get_image_coordinate_system(sources[0]) is None:  # the SEG's own grid, the same Frame of Reference
                own_frame_of_reference = own_frame_of_reference_uid(sources[0], settings.uid)
                sources = [with_own_grid(source, own_frame_of_reference) for source in sources]
            stored = np.rint(np.clip(soft[class_index][frames], 0.0, 1.0) * STORED_MAX).astype(np.uint16)
            identity = (series.content_key, producer.name, producer.fingerprint, "PM", class_index, group_number)
            parametric_map = hd.pm.ParametricMap(
                source_images=sources,
                pixel_array=stored,
                series_instance_uid=settings.uid(series.content_key, producer.name, producer.fingerprint,
                                                 "PM series"),
                series_number=settings.series_number(reference.get("SeriesNumber"), "PM"),
                sop_instance_uid=settings.uid(*identity),
                instance_number=len(maps) + 1,
                manufacturer=settings.manufacturer,
                manufacturer_model_name=producer.algorithm_name,
                software_versions=__version__,
                device_serial_number="0",
                contains_recognizable_visual_features=False,
                real_world_value_mappings=[_saliency_mapping()],
                voi_lut_transformations=[WHOLE_RANGE],
                content_label="MEDCAM_SALIENCY",
                content_description=f"AI Med-CAM saliency (mask probability): {name}"[:64],
                content_qualification=settings.content_qualification,
                contributing_equipment=[contributing_equipment(producer, settings)],
            )
            parametric_map.SeriesDescription = settings.series_description("PM", reference.get("SeriesDescription"))
            parametric_map.Laterality = reference.get("Laterality", "")  # type 2C in General Series
            if "PatientOrientation" not in parametric_map:
                orientation = patient_orientation(sources[0])
                parametric_map.PatientOrientation = list(orientation) if orientation else ""
            maps.append(parametric_map)
    return maps
