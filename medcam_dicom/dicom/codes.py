"""Coded concepts used in our SEG and SR. Standard codes (SCT, DCM, UCUM) where one exists; the rest use
the private coding scheme ``99MEDCAM``, declared in every object that uses it."""

from __future__ import annotations

import highdicom as hd
from highdicom.coding_schemes import CodingSchemeIdentificationItem
from pydicom.sr.codedict import codes

SCHEME = "99MEDCAM"
CODING_SCHEME = CodingSchemeIdentificationItem(designator=SCHEME, name="medcam-dicom evidence concepts")

ALGORITHM_FAMILY = codes.cid7162.ArtificialIntelligence
SEGMENT_CATEGORY = codes.SCT.SpatialAndRelationalConcept
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


def evidence_type(index: int, name: str) -> hd.sr.CodedConcept:
    """Segmented property type of the evidence segment of class ``name``."""
    return hd.sr.CodedConcept(f"EVIDENCE{index}", SCHEME, f"Evidence for {name}"[:64])
