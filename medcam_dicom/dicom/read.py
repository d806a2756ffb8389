"""Reading what hospitals send: files and folders into DICOM instances grouped by series.

Nothing here decodes pixels (see :mod:`medcam_dicom.dicom.pixels`); headers are read in full, large
values such as Pixel Data are deferred until used.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from medcam_dicom.dicom.errors import DicomInputError, NotAnImageError
from medcam_dicom.dicom.geometry import drop_invalid_geometry
from medcam_dicom.dicom.headers import complete_headers

UID_PATTERN = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")

#: Modalities whose objects are not images to explain.
NON_IMAGE_MODALITIES = frozenset(
    {"SR", "PR", "KO", "SEG", "RTSTRUCT", "RTPLAN", "RTRECORD", "RTDOSE", "REG", "DOC", "AU", "ECG", "HD"}
)
#: Storage SOP classes that are not images even when a modality says otherwise (SEG, RT, SR families).
NON_IMAGE_SOP_CLASS_PREFIXES = (
    "1.2.840.10008.5.1.4.1.1.66",  # raw data, spatial registration, segmentation, surface
    "1.2.840.10008.5.1.4.1.1.481",  # RT objects
    "1.2.840.10008.5.1.4.1.1.88",  # structured reports
    "1.2.840.10008.5.1.4.1.1.11",  # presentation states
    "1.2.840.10008.5.1.4.1.1.104",  # encapsulated documents
    "1.2.840.10008.5.1.4.1.1.9",  # waveforms
)
MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
DEFLATED_TRANSFER_SYNTAX = "1.2.840.10008.1.2.1.99"
#: A deflated dataset that inflates to more than this is refused before it is read: a few megabytes on disk
#: can otherwise claim gigabytes of memory (a "deflate bomb"). Twice the largest series we accept as
#: 16-bit pixels would need (see ``DEFAULT_MAX_PIXELS``), so real deflated images pass.
MAX_INFLATED_BYTES = 1024**3
#: explicit VRs with a 2-byte reserved field and a 4-byte length (PS3.5 7.1.2)
LONG_LENGTH_VRS = (b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV")


def is_valid_uid(value: object) -> bool:
    """Whether ``value`` is a syntactically valid DICOM UID (digits and dots, at most 64 characters)."""
    return isinstance(value, str) and 0 < len(value) <= 64 and bool(UID_PATTERN.match(value))


@dataclass
class Instance:
    """One DICOM file: where it came from and its dataset (Pixel Data deferred)."""

    path: Path
    dataset: Dataset
    notes: list[str] = field(default_factory=list)  # what was wrong with the header and what was done

    @property
    def sop_instance_uid(self) -> str:
        return str(self.dataset.SOPInstanceUID)

    @property
    def number_of_frames(self) -> int:
        return int(self.dataset.get("NumberOfFrames", 1) or 1)


@dataclass
class InputScan:
    """The result of reading paths: instances grouped by SeriesInstanceUID, plus what was skipped/failed."""

    series: dict[str, list[Instance]] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)


def read_instance(path: str | Path) -> Instance:
    """Read one file's dataset (pixels deferred) and check that it is an image we can place in a series.

    Raises :class:`NotAnImageError` for objects without an image (SR, PR, KO, RT, SEG, DICOMDIR) and
    :class:`DicomInputError` naming the file and the problem for anything unreadable or malformed. Invalid
    patient geometry is dropped (in memory) and noted in ``Instance.notes``, see :mod:`.geometry`; missing
    Type 2 attributes and the like are completed, see :mod:`.headers`.
    """
    path = Path(path)
    _refuse_deflate_bomb(path)
    notes = []
    try:
        dataset = pydicom.dcmread(path, defer_size="256 KB")
    except InvalidDicomError as error:
        dataset = _bare_image_dataset(path)
        if dataset is None:
            raise DicomInputError(path, "not a DICOM file (no 'DICM' prefix / File Meta Information)") from error
        notes.append(f"no DICOM preamble and File Meta Information: read as a bare dataset in "
                     f"{dataset.file_meta.TransferSyntaxUID.name}")
    except Exception as error:  # noqa: BLE001 - pydicom raises many types for corrupt data
        raise DicomInputError(path, f"cannot be parsed as DICOM: {error}") from error
    sop_class = str(
        dataset.get("SOPClassUID", "") or getattr(dataset.get("file_meta", None), "MediaStorageSOPClassUID", "")
    )
    if sop_class == MEDIA_STORAGE_DIRECTORY:
        raise NotAnImageError(path, "a DICOMDIR (media directory), not an image")
    modality = str(dataset.get("Modality", "") or "")
    if modality in NON_IMAGE_MODALITIES or sop_class.startswith(NON_IMAGE_SOP_CLASS_PREFIXES):
        raise NotAnImageError(path, f"a {modality or 'non-image'} object (SOP Class {sop_class}), not an image")
    if "SOPClassUID" not in dataset and is_valid_uid(sop_class):
        dataset.SOPClassUID = sop_class  # the File Meta's Media Storage SOP Class UID says the same
    for keyword, tag in (
        ("SOPClassUID", "(0008,0016)"),
        ("StudyInstanceUID", "(0020,000D)"),
        ("SeriesInstanceUID", "(0020,000E)"),
        ("SOPInstanceUID", "(0008,0018)"),
    ):
        value = dataset.get(keyword)
        if not is_valid_uid(None if value is None else str(value)):
            raise DicomInputError(path, f"{keyword} {tag} is missing or not a valid UID: {value!r}")
    if "PixelData" not in dataset and "FloatPixelData" not in dataset and "DoubleFloatPixelData" not in dataset:
        if "Rows" in dataset:
            raise DicomInputError(path, "has no Pixel Data (7FE0,0010)")
        raise NotAnImageError(path, f"has no image (no Rows/Pixel Data; SOP Class {sop_class or 'unknown'})")
    return Instance(path, dataset, notes + drop_invalid_geometry(dataset) + complete_headers(dataset))


def _bare_image_dataset(path: Path) -> Dataset | None:
    """A file without preamble and File Meta Information (old ACR-NEMA-style writers) read as a bare
    dataset, when it holds an image with a valid SOP Class UID; ``None`` for anything else (text files and
    the like, which a forced read turns into a dataset of garbage)."""
    try:
        dataset = pydicom.dcmread(path, defer_size="256 KB", force=True)
        if not is_valid_uid(str(dataset.get("SOPClassUID", ""))) or "PixelData" not in dataset:
            return None
    except Exception:  # noqa: BLE001 - not DICOM at all
        return None
    implicit, little = dataset.original_encoding
    syntax = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian if little else ExplicitVRBigEndian
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.TransferSyntaxUID = syntax
    dataset.file_meta.MediaStorageSOPClassUID = dataset.SOPClassUID
    dataset.file_meta.MediaStorageSOPInstanceUID = dataset.get("SOPInstanceUID", "")
    return dataset


def _refuse_deflate_bomb(path: Path, limit: int = MAX_INFLATED_BYTES) -> None:
    """Raise :class:`DicomInputError` when ``path`` is a Deflated Explicit VR Little Endian file whose dataset
    inflates to more than ``limit`` bytes; measured in bounded chunks, nothing inflated is kept."""
    try:
        meta = pydicom.filereader.read_file_meta_info(path)
    except Exception:  # noqa: BLE001 - not DICOM, or a broken meta: dcmread says what is wrong
        return
    if str(meta.get("TransferSyntaxUID", "")) != DEFLATED_TRANSFER_SYNTAX:
        return
    syntax = f"Transfer Syntax UID (0002,0010) {DEFLATED_TRANSFER_SYNTAX}"
    with path.open("rb") as stream:
        _skip_file_meta(stream)
        inflater, inflated = zlib.decompressobj(-zlib.MAX_WBITS), 0
        while chunk := inflater.unconsumed_tail or stream.read(1 << 16):
            try:
                inflated += len(inflater.decompress(chunk, 1 << 24))
            except zlib.error as error:
                raise DicomInputError(path, f"the deflated dataset ({syntax}) cannot be inflated: {error}") from error
            if inflated > limit:
                raise DicomInputError(
                    path,
                    f"the deflated dataset ({syntax}) inflates to more than {limit // 1024**2} MiB: refused as a "
                    "decompression bomb",
                )
            if inflater.eof:
                return


def _skip_file_meta(stream: BinaryIO) -> None:
    """Position ``stream`` after the preamble and the File Meta Information (group 0002, always explicit VR
    little endian), where a deflated dataset's compressed bytes begin."""
    stream.seek(128 + 4)
    while True:
        start = stream.tell()
        head = stream.read(6)
        if len(head) < 6 or int.from_bytes(head[:2], "little") != 0x0002:
            stream.seek(start)
            return
        if head[4:6] in LONG_LENGTH_VRS:
            stream.seek(2, 1)
            length = int.from_bytes(stream.read(4), "little")
        else:
            length = int.from_bytes(stream.read(2), "little")
        stream.seek(length, 1)


def iter_files(paths: Iterable[str | Path]) -> Iterator[tuple[Path, bool]]:
    """Each file under ``paths`` (folders walked recursively, sorted), with whether it was named explicitly."""
    for given in paths:
        given = Path(given)
        if given.is_dir():
            for path in sorted(p for p in given.rglob("*") if p.is_file()):
                yield path, False
        else:
            yield given, True


def scan_inputs(paths: Sequence[str | Path]) -> InputScan:
    """Read every file under ``paths`` and group the images by series.

    Files that are not DICOM are failures when named explicitly and skipped (with a reason) when found
    while walking a folder; non-image DICOM objects are skipped; malformed images are failures.
    """
    scan = InputScan()
    for path, explicit in iter_files(paths):
        if not path.exists():
            scan.failed.append((str(path), "no such file or folder"))
            continue
        try:
            instance = read_instance(path)
        except NotAnImageError as error:
            scan.skipped.append((str(path), error.problem))
            continue
        except DicomInputError as error:
            if not explicit and error.problem.startswith("not a DICOM file"):
                scan.skipped.append((str(path), "not a DICOM file"))
            else:
                scan.failed.append((str(path), error.problem))
            continue
        scan.series.setdefault(str(instance.dataset.SeriesInstanceUID), []).append(instance)
    for instances in scan.series.values():
        unique: dict[str, Instance] = {}
        for instance in instances:
            unique.setdefault(instance.sop_instance_uid, instance)
        instances[:] = list(unique.values())
    return scan
