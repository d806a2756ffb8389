"""Hostile DICOM files for the conformance corpus (issue 13): each is a bundled pydicom file broken the way
real archives, faulty modalities and attackers break them - truncated, flipped bytes, headers that lie about
the pixel data, degenerate geometry, corrupt compressed streams and memory bombs. Made offline and
deterministically (fixed seeds), each in a series and study of its own so that one cannot hide another.

:func:`write_hostile_files` writes them and returns what each is, so a test can check that every file was
either explained or refused naming the file (and, where a header is at fault, the tag).
"""

from __future__ import annotations

import copy
import shutil
import subprocess
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import DeflatedExplicitVRLittleEndian, generate_uid

from tests.dicom_inputs import bundled

#: name -> (bundled source, what is done to it); the header changes keep the file parseable
HEADER_LIES: dict[str, tuple[str, Callable[[Dataset], None]]] = {
    "rows-larger-than-data": ("CT_small.dcm", lambda d: setattr(d, "Rows", 512)),
    "columns-smaller-than-data": ("CT_small.dcm", lambda d: setattr(d, "Columns", 63)),
    "rows-zero": ("CT_small.dcm", lambda d: setattr(d, "Rows", 0)),
    "bits-allocated-32-on-16-bit-data": ("CT_small.dcm", lambda d: setattr(d, "BitsAllocated", 32)),
    "bits-allocated-12": ("CT_small.dcm", lambda d: setattr(d, "BitsAllocated", 12)),
    "bits-stored-above-allocated": ("CT_small.dcm", lambda d: setattr(d, "BitsStored", 24)),
    "frames-1000-on-one-frame": ("CT_small.dcm", lambda d: setattr(d, "NumberOfFrames", 1000)),
    "frames-zero": ("MR_small.dcm", lambda d: setattr(d, "NumberOfFrames", 0)),
    "samples-3-on-greyscale": ("CT_small.dcm", lambda d: setattr(d, "SamplesPerPixel", 3)),
    "photometric-unknown": ("CT_small.dcm", lambda d: setattr(d, "PhotometricInterpretation", "HSV")),
    "rescale-slope-zero": ("CT_small.dcm", lambda d: setattr(d, "RescaleSlope", 0)),
    "palette-without-lut": ("MR_small.dcm", lambda d: setattr(d, "PhotometricInterpretation", "PALETTE COLOR")),
    # memory bombs: the header claims far more pixels than the file holds
    "bomb-65535-squared": ("CT_small.dcm", lambda d: (setattr(d, "Rows", 65535), setattr(d, "Columns", 65535))),
    "bomb-frames": ("CT_small.dcm", lambda d: setattr(d, "NumberOfFrames", 2_000_000)),
    "bomb-jpeg2000-header": ("MR_small_jp2klossless.dcm", lambda d: (setattr(d, "Rows", 40000),
                                                                      setattr(d, "Columns", 40000))),
    # degenerate geometry beyond the cases of test_dicom_pipeline
    "orientation-parallel-axes": ("CT_small.dcm", lambda d: setattr(d, "ImageOrientationPatient", [1, 0, 0] * 2)),
    "position-nan": ("CT_small.dcm", lambda d: setattr(d, "ImagePositionPatient", ["nan", "0", "0"])),
    "spacing-negative": ("CT_small.dcm", lambda d: setattr(d, "PixelSpacing", [-0.5, 0.5])),
    "spacing-huge": ("CT_small.dcm", lambda d: setattr(d, "PixelSpacing", [1e30, 1e30])),
}

#: name -> (bundled compressed source, byte position as a share of the stream, how many bytes to garble)
CORRUPT_STREAMS: dict[str, tuple[str, float, int]] = {
    "jpeg-baseline-garbled": ("SC_rgb_jpeg_dcmtk.dcm", 0.5, 64),
    "jpeg-lossless-garbled": ("JPEG-LL.dcm", 0.3, 64),
    "jpeg-ls-garbled": ("MR_small_jpeg_ls_lossless.dcm", 0.4, 64),
    "jpeg2000-garbled": ("MR_small_jp2klossless.dcm", 0.4, 64),
    "rle-garbled-header": ("MR_small_RLE.dcm", 0.0, 16),
}


def _own_study(dataset: Dataset) -> None:
    dataset.StudyInstanceUID, dataset.SeriesInstanceUID = generate_uid(), generate_uid()
    dataset.SOPInstanceUID = generate_uid()
    if hasattr(dataset, "file_meta"):
        dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID


def _save(dataset: Dataset, folder: Path, name: str) -> Path:
    path = folder / f"{name}.dcm"
    dataset.save_as(path, enforce_file_format=False)
    return path


def own_copy(folder: Path, name: str, source: str, change: Callable[[Dataset], None] | None = None) -> Path:
    """``folder/name.dcm``: the bundled ``source`` in a study and series of its own, changed by ``change``
    (a header lie), saved without the file-format checks a broken header would fail."""
    dataset = pydicom.dcmread(bundled(source))
    _own_study(dataset)
    if change is not None:
        change(dataset)
    folder.mkdir(parents=True, exist_ok=True)
    return _save(dataset, folder, name)


def _corrupt_stream(folder: Path, name: str, source: str, where: float, count: int) -> Path:
    """Garble ``count`` bytes of the first compressed fragment (fixed seed), headers left intact."""
    path = own_copy(folder, name, source)
    data = bytearray(path.read_bytes())
    # the first fragment follows the Basic Offset Table item of the encapsulated Pixel Data
    pixel_tag = data.rfind(b"\xe0\x7f\x10\x00")
    fragment = data.find(b"\xfe\xff\x00\xe0", data.find(b"\xfe\xff\x00\xe0", pixel_tag) + 8)
    length = int.from_bytes(data[fragment + 4:fragment + 8], "little")
    start = fragment + 8 + int(where * max(length - count, 0))
    garbage = np.random.default_rng(13).integers(0, 256, count, dtype=np.uint8).tobytes()
    data[start:start + count] = garbage
    path.write_bytes(bytes(data))
    return path


def _byte_flips(folder: Path, name: str, source: str, seed: int, flips: int) -> Path:
    """Flip ``flips`` random bytes anywhere after the preamble (fixed seed)."""
    data = bytearray(own_copy(folder, name, source).read_bytes())
    rng = np.random.default_rng(seed)
    for position in rng.integers(132, len(data), flips):
        data[position] ^= 0xFF
    path = folder / f"{name}.dcm"
    path.write_bytes(bytes(data))
    return path


def _truncated(folder: Path, name: str, source: str, share: float) -> Path:
    path = own_copy(folder, name, source)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * share)])
    return path


def _deflate_bomb(folder: Path, name: str, inflated_bytes: int) -> Path:
    """A Deflated Explicit VR Little Endian file whose dataset inflates to ``inflated_bytes`` (mostly one
    huge private element of zeros): small on disk, gigabytes in memory for a reader that inflates it whole."""
    dataset = pydicom.dcmread(bundled("CT_small.dcm"))
    _own_study(dataset)
    dataset.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    path = _save(dataset, folder, name)
    data = path.read_bytes()
    meta_end = 132 + 12 + int.from_bytes(data[140:144], "little")  # File Meta Group Length's value
    head = data[meta_end:]
    plain = zlib.decompress(head, -zlib.MAX_WBITS)
    # a private element (0009,1001) OB of zeros in front of the rest of the dataset
    filler = b"\x09\x00\x01\x10OB\x00\x00" + inflated_bytes.to_bytes(4, "little")
    # a full flush resets the window, so one compressed megabyte of zeros can be repeated verbatim
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    parts = [compressor.compress(filler) + compressor.flush(zlib.Z_FULL_FLUSH)]
    megabyte = compressor.compress(bytes(1 << 20)) + compressor.flush(zlib.Z_FULL_FLUSH)
    parts += [megabyte] * (inflated_bytes >> 20)
    parts.append(compressor.compress(plain) + compressor.flush())
    path.write_bytes(data[:meta_end] + b"".join(parts))
    return path


def _enhanced_with_broken_frame(folder: Path, name: str, keyword: str, value: list) -> Path:
    """A legacy-converted enhanced CT of three slices whose second frame's ``keyword`` (in its plane
    position or orientation functional group) is ``value``."""
    import highdicom as hd

    from tests.dicom_inputs import ct_series

    with tempfile.TemporaryDirectory() as scratch:
        slices = [pydicom.dcmread(path) for path in ct_series(Path(scratch), slices=3)]
    enhanced = hd.legacy.LegacyConvertedEnhancedCTImage(slices, series_instance_uid=generate_uid(), series_number=7,
                                                        sop_instance_uid=generate_uid(), instance_number=1)
    enhanced.StudyInstanceUID = generate_uid()
    frame = enhanced.PerFrameFunctionalGroupsSequence[1]
    macro = "PlanePositionSequence" if keyword == "ImagePositionPatient" else "PlaneOrientationSequence"
    if macro not in frame:  # shared by every frame: give the second frame its own copy
        frame[macro] = copy.deepcopy(enhanced.SharedFunctionalGroupsSequence[0][macro])
    setattr(frame[macro].value[0], keyword, value)
    return _save(enhanced, folder, name)


def write_hostile_files(folder: Path) -> dict[str, Path]:
    """Write every hostile file into ``folder``; returns name -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    for name, (source, change) in HEADER_LIES.items():
        files[name] = own_copy(folder, name, source, change)
    for name, (source, where, count) in CORRUPT_STREAMS.items():
        files[name] = _corrupt_stream(folder, name, source, where, count)
    for share in (0.1, 0.5, 0.99):
        files[f"truncated-{int(share * 100)}"] = _truncated(folder, f"truncated-{int(share * 100)}", "CT_small.dcm",
                                                            share)
    for seed in range(4):
        files[f"byte-flips-{seed}"] = _byte_flips(folder, f"byte-flips-{seed}", "CT_small.dcm", seed, 40)
    files["empty"] = folder / "empty.dcm"
    files["empty"].write_bytes(b"")
    files["preamble-only"] = folder / "preamble-only.dcm"
    files["preamble-only"].write_bytes(bytes(128) + b"DICM")
    files["deflate-bomb"] = _deflate_bomb(folder, "deflate-bomb", 3 << 30)
    files["enhanced-frame-position-nan"] = _enhanced_with_broken_frame(
        folder, "enhanced-frame-position-nan", "ImagePositionPatient", ["nan", "0", "0"])
    files["enhanced-frame-orientation-zero"] = _enhanced_with_broken_frame(
        folder, "enhanced-frame-orientation-zero", "ImageOrientationPatient", [0] * 6)
    return files


def img2dcm_files(folder: Path) -> dict[str, Path]:
    """Secondary Captures made by dcmtk's ``img2dcm`` from a JPEG and from a BMP (what scanning stations and
    photo capture tools produce): ``{}`` where dcmtk is not installed."""
    if not shutil.which("img2dcm"):
        return {}
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(5)
    y, x = np.mgrid[:240, :320]
    photo = np.stack([(x * 0.7) % 255, (y * 0.9) % 255, 128 + 60 * np.sin(x / 17.0)], axis=-1)
    photo = np.clip(photo + rng.normal(0, 8, photo.shape), 0, 255).astype(np.uint8)
    files = {}
    for name, suffix, mode in (("img2dcm-jpeg", "jpg", "RGB"), ("img2dcm-bmp-grey", "bmp", "L")):
        image = folder / f"{name}.{suffix}"
        Image.fromarray(photo).convert(mode).save(image)
        target = folder / f"{name}.dcm"
        subprocess.run(["img2dcm", "-i", suffix.upper().replace("JPG", "JPEG"), str(image), str(target)],
                       check=True, capture_output=True, timeout=60)
        image.unlink()
        files[name] = target
    return files
