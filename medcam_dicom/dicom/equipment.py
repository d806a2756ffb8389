"""Who made a result, the way IHE AI Results (AIR) asks: a Contributing Equipment item with the purpose
"Processing Equipment" (DCM 109102), naming the algorithm with the same name and version as the SEG's
Algorithm Identification and the SR's TID 4019, in every SEG, SC and SR we write (passed to highdicom's
constructors, which add the source's acquisition equipment and the library itself beside it)."""

from __future__ import annotations

import highdicom as hd

from medcam_dicom import __version__
from medcam_dicom.dicom import codes
from medcam_dicom.dicom.results import Producer
from medcam_dicom.dicom.settings import OutputSettings


def device_uid(producer: Producer, settings: OutputSettings) -> str:
    """The algorithm's Device UID (also the SR's device observer UID): stable per manufacturer and model."""
    return settings.uid("device", settings.manufacturer, producer.name)


def contributing_equipment(producer: Producer, settings: OutputSettings) -> hd.ContributingEquipment:
    """The Contributing Equipment item describing the algorithm as processing equipment, with the Device
    UID AIR asks for (highdicom's constructor has no parameter for it)."""
    item = hd.ContributingEquipment(
        manufacturer=settings.manufacturer,
        purpose_of_reference=codes.PROCESSING_EQUIPMENT,
        manufacturer_model_name=producer.algorithm_name,
        software_versions=[__version__, producer.algorithm_version],
        institution_name=settings.institution_name,
        contribution_description="AI-generated Med-CAM evidence (minimal mask that keeps the decision)",
    )
    item.DeviceUID = device_uid(producer, settings)
    return item
