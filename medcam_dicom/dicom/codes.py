"""Coded concepts used in our SEG, SC and SR. Standard codes (SCT, DCM, UCUM) where one exists; the rest
(the classifier's classes, our measurements and checks, the method) use the private coding scheme
``99MEDCAM``, declared in every object that uses it."""

from __future__ import annotations

import highdicom as hd
from highdicom.coding_schemes import CodingSchemeIdentificationItem
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

SCHEME = "99MEDCAM"
CODING_SCHEME = CodingSchemeIdentificationItem(designator=SCHEME, name="medcam-dicom evidence concepts")

ALGORITHM_FAMILY = codes.cid7162.ArtificialIntelligence
PROCESSING_EQUIPMENT = codes.DCM.ProcessingEquipment  # Contributing Equipment's purpose (CID 7005)
# CID 217 "Visual Explanation" (DICOM 2024 code tables): the segment's category and type; the class it
# explains is the type modifier
SEGMENT_CATEGORY = codes.DCM.VisualExplanation
SEGMENT_TYPE = codes.DCM.Saliency
PROCEDURE_REPORTED = codes.SCT.ImagingProcedure
YES = codes.SCT.Yes
NO = codes.SCT.No
UNIT_RATIO = hd.sr.CodedConcept("1", "UCUM", "no units")

PROBABILITY = hd.sr.CodedConcept("PROB", SCHEME, "Classifier probability on the full image")
MASKED_PROBABILITY = hd.sr.CodedConcept("PROBMASKED", SCHEME, "Classifier probability on the evidence alone")
AREA_FRACTION = hd.sr.CodedConcept("AREAFRAC", SCHEME, "Fraction of the image kept as evidence")
FAITHFUL = hd.sr.CodedConcept("FAITHFUL", SCHEME, "Decision kept on the evidence alone")
RANDOM_KEEP = hd.sr.CodedConcept("RANDKEEP", SCHEME, "Share of random regions of that size keeping it")
SPECIFIC = hd.sr.CodedConcept("SPECIFIC", SCHEME, "Decision specific to the evidence")
METHOD = hd.sr.CodedConcept("MEDCAM", SCHEME, "Med-CAM minimal evidence mask")


def class_concept(index: int, name: str) -> hd.sr.CodedConcept:
    """The finding (classifier class) ``name`` as a coded concept of our scheme."""
    return hd.sr.CodedConcept(f"CLASS{index}", SCHEME, name[:64])


def class_index(concept: Dataset) -> int | None:
    """The class index of a :func:`class_concept` code item (``None`` for any other code)."""
    if concept.CodingSchemeDesignator != SCHEME or not str(concept.CodeValue).startswith("CLASS"):
        return None
    return int(str(concept.CodeValue).removeprefix("CLASS"))
