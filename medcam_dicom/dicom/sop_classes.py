"""Source images of SOP classes highdicom has no IOD for: retired classes that old archives still hold
(Ultrasound Image Storage (Retired) ``...1.1.6``, its multi-frame twin, Nuclear Medicine (Retired)) and
private or unknown classes.

highdicom decides which patient, study and specimen attributes to copy from a source by looking up the
source's IOD, and raises ``KeyError`` for a class it does not know. While the results are built, such a
source is given a stand-in class of the same kind (the current class that replaced the retired one, else
Secondary Capture); afterwards the source is given back its own class and every reference to it in the
results names the class the archive holds, so that a PACS can resolve it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

from pydicom.dataset import Dataset
from pydicom.uid import UID

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"

#: retired storage classes -> the class that replaced them (PS3.4 Annex B history)
RETIRED_REPLACEMENTS = {
    "1.2.840.10008.5.1.4.1.1.3": "1.2.840.10008.5.1.4.1.1.3.1",  # Ultrasound Multi-frame Image Storage
    "1.2.840.10008.5.1.4.1.1.5": "1.2.840.10008.5.1.4.1.1.20",  # Nuclear Medicine Image Storage
    "1.2.840.10008.5.1.4.1.1.6": "1.2.840.10008.5.1.4.1.1.6.1",  # Ultrasound Image Storage
}


def stand_in_class(sop_class_uid: str) -> str | None:
    """The class highdicom should see for a source of class ``sop_class_uid``; ``None`` where highdicom
    knows the class itself (a current, registered storage class)."""
    uid = UID(sop_class_uid)
    if sop_class_uid in RETIRED_REPLACEMENTS:
        return RETIRED_REPLACEMENTS[sop_class_uid]
    if uid.is_retired or uid.name == sop_class_uid:  # retired without a replacement, or private/unknown
        return SECONDARY_CAPTURE
    return None


@contextmanager
def known_to_highdicom(datasets: Iterable[Dataset]) -> Iterator[dict[str, str]]:
    """Give each source of a class highdicom does not know a stand-in class for the duration; yields the
    originals (SOP Instance UID -> SOP Class UID) for :func:`restore_references`."""
    originals: dict[str, str] = {}
    changed: list[tuple[Dataset, str]] = []
    for dataset in datasets:
        original = str(dataset.get("SOPClassUID", ""))
        stand_in = stand_in_class(original) if original else None
        if stand_in is not None and all(dataset is not other for other, _ in changed):
            originals[str(dataset.SOPInstanceUID)] = original
            changed.append((dataset, original))
            dataset.SOPClassUID = stand_in
    try:
        yield originals
    finally:
        for dataset, original in changed:
            dataset.SOPClassUID = original


def restore_references(results: Sequence[Dataset], originals: dict[str, str]) -> None:
    """Make every item of ``results`` that references one of the ``originals`` by SOP Instance UID name
    that source's own SOP Class UID (SEG source images, SC derivation, SR image references)."""
    if not originals:
        return

    def visit(dataset: Dataset) -> None:
        instance = dataset.get("ReferencedSOPInstanceUID")
        if instance is not None and str(instance) in originals and "ReferencedSOPClassUID" in dataset:
            dataset.ReferencedSOPClassUID = originals[str(instance)]
        for element in dataset:
            if element.VR == "SQ":
                for item in element.value:
                    visit(item)

    for result in results:
        visit(result)
