"""Headers that are readable but incomplete, completed in memory before anything is built from them, so
that one missing Type 2 attribute never costs a study its results (highdicom's constructors copy these
attributes from the source and fail when one is absent). Each change is noted for the result, naming the
attribute; the files themselves are never modified."""

from __future__ import annotations

import re
from collections.abc import Callable

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.valuerep import DA, TM

#: Type 2 attributes of the Patient and General Study modules that every result copies from the source:
#: present (empty when unknown) in a conforming file, absent in some test and legacy files
PATIENT_AND_STUDY_TYPE_2 = (
    "PatientID", "PatientName", "PatientBirthDate", "PatientSex",
    "StudyID", "AccessionNumber", "StudyDate", "StudyTime", "ReferringPhysicianName",
)
#: dates and times the results copy from the source (General Study, General Series)
COPIED_DATES_AND_TIMES = {"StudyDate": DA, "StudyTime": TM, "SeriesDate": DA, "SeriesTime": TM}
#: the ACR-NEMA forms older files still carry: 1997.04.24 and 14:04:38
_OLD_FORM = re.compile(r"^[\d.:]+$")
#: the Specific Character Set terms highdicom writes; any other (an empty first term, ISO_IR 6) becomes UTF-8
ACCEPTED_CHARACTER_SETS = frozenset(value.value for value in hd.SpecificCharacterSetValues)


def complete_headers(dataset: Dataset) -> list[str]:
    """Complete ``dataset`` in place: missing patient/study Type 2 attributes present and empty; a Specific
    Character Set (0008,0005) that highdicom cannot write replaced by UTF-8 (the text is already decoded,
    and UTF-8 holds any of it); study/series dates and times in the ACR-NEMA form (``1997.04.24``,
    ``14:04:38``) in the DICOM form, unparsable ones empty; Patient Identity Removed YES without a method
    given one ("not stated in the source"). Returns one note per change. A missing Frame of Reference UID
    is given by :func:`complete_frame_of_reference`, which needs the site's UID root."""
    notes = []
    missing = [keyword for keyword in PATIENT_AND_STUDY_TYPE_2 if keyword not in dataset]
    for keyword in missing:
        setattr(dataset, keyword, "")
    if missing:
        notes.append(f"{', '.join(missing)} missing (Type 2): written empty in the results")
    if "SpecificCharacterSet" in dataset:
        value = dataset.SpecificCharacterSet
        terms = [value] if isinstance(value, str) else list(value)
        if not terms or any(term not in ACCEPTED_CHARACTER_SETS for term in terms):
            notes.append(f"Specific Character Set (0008,0005) {value!r} cannot be written: the results use UTF-8")
            dataset.SpecificCharacterSet = "ISO_IR 192"
    for keyword, kind in COPIED_DATES_AND_TIMES.items():
        raw = dataset.get(keyword)
        if raw in (None, ""):
            continue
        text = str(raw).strip()
        repaired = text.replace(".", "").replace(":", "") if _OLD_FORM.match(text) else text
        try:
            kind(repaired)
        except ValueError:
            repaired = ""
        if repaired != text:
            setattr(dataset, keyword, repaired)
            tag = dataset.data_element(keyword).tag
            done = f"written as {repaired!r}" if repaired else f"not a valid {kind.__name__}: written empty"
            notes.append(f"{keyword} ({tag.group:04X},{tag.element:04X}) {text!r}: {done} in the results")
    if str(dataset.get("PatientIdentityRemoved", "")).upper() == "YES" and not (
        dataset.get("DeidentificationMethod") or dataset.get("DeidentificationMethodCodeSequence")
    ):
        dataset.DeidentificationMethod = "not stated in the source"  # Type 1C once identity is removed
        notes.append("Patient Identity Removed (0012,0062) is YES without De-identification Method (0012,0063): "
                     "the results say it was not stated")
    return notes


def complete_frame_of_reference(dataset: Dataset, uid: Callable[..., str]) -> list[str]:
    """Give patient geometry without a Frame of Reference UID (0020,0052) one, ``uid(series UID, "frame of
    reference")`` (:meth:`OutputSettings.uid`: under the site's UID root, the same for every image of the
    series and every run), in place; returns the note, or nothing when there was nothing to do."""
    if "ImageOrientationPatient" not in dataset or "ImagePositionPatient" not in dataset:
        return []
    if dataset.get("FrameOfReferenceUID"):
        return []
    dataset.FrameOfReferenceUID = uid(str(dataset.SeriesInstanceUID), "frame of reference")
    return ["Frame of Reference UID (0020,0052) missing beside patient geometry: the results use one derived "
            "from the series"]
