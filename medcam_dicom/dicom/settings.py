"""How results are labelled: UID root, series numbers, content qualification, equipment identity."""

from __future__ import annotations

from dataclasses import dataclass

from pydicom.uid import PYDICOM_ROOT_UID, generate_uid

from medcam_dicom.dicom.read import UID_PATTERN

CONTENT_QUALIFICATIONS = ("PRODUCT", "RESEARCH", "SERVICE")
OVERLAYS = ("findings", "all")
OUTPUT_KINDS = {"SEG": 1, "SC": 2, "SR": 3, "PM": 4}


@dataclass(frozen=True)
class OutputSettings:
    """Identity of everything we write.

    Attributes:
        uid_root: prefix of every new UID (ends with "."; use your organisation's root).
        series_number_base: result series numbers are ``base + 10 * source series number + {1, 2, 3, 4}``
            for SEG, SC, SR and Parametric Map, so every output series of a study has its own number.
        content_qualification: ContentQualification of the results (RESEARCH unless you are cleared
            for clinical use).
        manufacturer: Manufacturer of the results (the loop guard in ``orthanc/`` looks for it).
        institution_name: optional InstitutionName of the results.
        key_slices: Secondary Captures of a volume's evidence: at most this many slices per explained
            class (the SEG holds every slice).
        overlays: which decisions' evidence is drawn over the images (SEG segments and Secondary
            Captures): ``findings``, the classes the model description lists as findings (every class when
            it lists none), or ``all``. Every decision is in the SR either way.
        parametric_map: also write the explainer's soft mask (its mask probabilities) of the drawn evidence
            as a Parametric Map (quantity DCM 130404 "Saliency"), for viewers that show heat maps.
    """

    uid_root: str = PYDICOM_ROOT_UID
    series_number_base: int = 9000
    content_qualification: str = "RESEARCH"
    manufacturer: str = "medcam-dicom"
    institution_name: str | None = None
    key_slices: int = 5
    overlays: str = "findings"
    parametric_map: bool = False

    def __post_init__(self) -> None:
        root = self.uid_root
        if not root.endswith(".") or not UID_PATTERN.match(root[:-1]) or len(root) > 40:
            raise ValueError(
                f"uid_root must be a valid UID prefix ending with '.' of at most 40 characters, got {root!r}"
            )
        if self.content_qualification not in CONTENT_QUALIFICATIONS:
            raise ValueError(
                f"content_qualification must be one of {CONTENT_QUALIFICATIONS}, got {self.content_qualification!r}"
            )
        if self.overlays not in OVERLAYS:
            raise ValueError(f"overlays must be one of {OVERLAYS}, got {self.overlays!r}")
        if self.key_slices < 1:
            raise ValueError(f"key_slices must be >= 1, got {self.key_slices}")
        if not 0 <= self.series_number_base < 2**30:
            raise ValueError(f"series_number_base out of range: {self.series_number_base}")

    def uid(self, *identity: str) -> str:
        """A UID under :attr:`uid_root` derived from ``identity``: explaining the same series with the same
        model again gives the same UIDs, so a PACS that receives a result twice stores it once."""
        return generate_uid(prefix=self.uid_root, entropy_srcs=[str(part) for part in identity])

    def series_number(self, source_series_number: object, kind: str) -> int:
        """The SeriesNumber of the ``kind`` (SEG, SC, SR, PM) results of a source series."""
        try:
            source = int(source_series_number)
        except (TypeError, ValueError):
            source = 0
        return (self.series_number_base + 10 * (abs(source) % 100_000) + OUTPUT_KINDS[kind]) % 2**31

    def series_description(self, kind: str, source_description: object) -> str:
        """SeriesDescription saying that the content is AI-generated evidence (at most 64 characters)."""
        text = f"AI Med-CAM evidence {kind}"
        source = str(source_description or "").strip()
        return (f"{text} - {source}" if source else text)[:64]
