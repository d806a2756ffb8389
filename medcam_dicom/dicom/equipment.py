"""Who made a result, the way IHE AI Results (AIR) asks: a Contributing Equipment item with the purpose
"Processing Equipment" (DCM 109102), naming the algorithm with the same name and version as the SEG's
Algorithm Identification and the SR's TID 4019, in every SEG, SC and SR we write."""

from __future__ import annotations

from pydicom.dataset import Dataset

from medcam_dicom import __version__
from medcam_dicom.dicom import codes
from medcam_dicom.dicom.results import Producer
from medcam_dicom.dicom.settings import OutputSettings


def device_uid(producer: Producer, settings: OutputSettings) -> str:
    """The algorithm's Device UID (also the SR's device observer UID): stable per manufacturer and model."""
    return settings.uid("device", settings.manufacturer, producer.name)


def contributing_equipment(producer: Producer, settings: OutputSettings) -> Dataset:
    """One Contributing Equipment Sequence item describing the algorithm as processing equipment."""
    purpose = Dataset()
    purpose.CodeValue = codes.PROCESSING_EQUIPMENT.value
    purpose.CodingSchemeDesignator = codes.PROCESSING_EQUIPMENT.scheme_designator
    purpose.CodeMeaning = codes.PROCESSING_EQUIPMENT.meaning
    item = Dataset()
    item.PurposeOfReferenceCodeSequence = [purpose]
    item.Manufacturer = settings.manufacturer
    if settings.institution_name:
        item.InstitutionName = settings.institution_name
    item.ManufacturerModelName = producer.algorithm_name
    item.SoftwareVersions = [__version__, producer.algorithm_version]
    item.DeviceUID = device_uid(producer, settings)
    item.ContributionDescription = "AI-generated Med-CAM evidence (minimal mask that keeps the decision)"
    return item


def add_contributing_equipment(dataset: Dataset, producer: Producer, settings: OutputSettings) -> None:
    """Append the algorithm's Contributing Equipment item to ``dataset`` (kept: any item already there)."""
    items = list(dataset.get("ContributingEquipmentSequence", []))
    items.append(contributing_equipment(producer, settings))
    dataset.ContributingEquipmentSequence = items
