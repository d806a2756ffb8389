"""Decoding pixel data into arrays the models can use, whatever the photometric interpretation.

Grey-scale images come back in modality units (Rescale Slope/Intercept applied; MONOCHROME1 inverted so
that larger always means brighter); colour images (RGB, YBR, PALETTE COLOR) come back as RGB in
[0, 255] whatever their bit depth. Compressed transfer syntaxes are decoded by pydicom's pylibjpeg
plugins (JPEG, JPEG-LS, JPEG 2000, RLE) and deflate by pydicom itself.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels import apply_color_lut, apply_modality_lut

from medcam_dicom.dicom.errors import DicomInputError

GREYSCALE = ("MONOCHROME1", "MONOCHROME2")
COLOUR = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_PARTIAL_420", "YBR_ICT", "YBR_RCT", "PALETTE COLOR")
SUPPORTED_PHOTOMETRIC = GREYSCALE + COLOUR


def is_colour(dataset: Dataset) -> bool:
    """Whether the image is colour (three samples per pixel or a palette)."""
    return str(dataset.get("PhotometricInterpretation", "")) in COLOUR


def decode_frames(dataset: Dataset, source: str | Path, max_pixels: int | None = None) -> np.ndarray:
    """All frames of one instance as float32 ``(frames, rows, columns, channels)``.

    ``channels`` is 1 for grey-scale (modality units) and 3 for colour (RGB in [0, 255]).
    Raises :class:`DicomInputError` naming ``source`` and the tag at fault.
    """
    photometric = str(dataset.get("PhotometricInterpretation", ""))
    if photometric not in SUPPORTED_PHOTOMETRIC:
        raise DicomInputError(
            source,
            f"unsupported Photometric Interpretation (0028,0004) {photometric!r}; "
            f"supported: {', '.join(SUPPORTED_PHOTOMETRIC)}",
        )
    rows, columns = int(dataset.get("Rows", 0) or 0), int(dataset.get("Columns", 0) or 0)
    frames = int(dataset.get("NumberOfFrames", 1) or 1)
    if rows <= 0 or columns <= 0:
        raise DicomInputError(source, f"Rows (0028,0010) / Columns (0028,0011) invalid: {rows} x {columns}")
    if max_pixels is not None and rows * columns * frames > max_pixels:
        raise DicomInputError(
            source,
            f"Number of Frames (0028,0008) x Rows (0028,0010) x Columns (0028,0011) = {frames} x {rows} x {columns} "
            f"pixels exceeds the configured limit of {max_pixels} pixels",
        )
    try:
        pixels = dataset.pixel_array
    except Exception as error:  # noqa: BLE001 - decoders raise many types for corrupt/truncated data
        raise DicomInputError(source, f"Pixel Data (7FE0,0010) cannot be decoded: {error}") from error
    pixels = np.asarray(pixels)
    samples = int(dataset.get("SamplesPerPixel", 1) or 1)
    shape = (frames, rows, columns) if samples == 1 else (frames, rows, columns, samples)
    if pixels.size != np.prod(shape):
        raise DicomInputError(
            source,
            f"Pixel Data (7FE0,0010) holds {pixels.size} values where Number of Frames (0028,0008) x Rows (0028,0010) "
            f"x Columns (0028,0011) x Samples per Pixel (0028,0002) = {' x '.join(map(str, shape))} say otherwise",
        )
    pixels = pixels.reshape(shape)
    if photometric in GREYSCALE:
        return _greyscale(dataset, pixels, source)[..., None]
    if photometric == "PALETTE COLOR":
        try:
            rgb = np.asarray(apply_color_lut(pixels, dataset), dtype=np.float32)
            bits = int(dataset.RedPaletteColorLookupTableDescriptor[2])
        except Exception as error:  # noqa: BLE001 - missing or inconsistent palette attributes
            raise DicomInputError(
                source,
                f"PALETTE COLOR without a usable palette: Red/Green/Blue Palette Color Lookup Table Descriptor "
                f"(0028,1101-1103) and Data (0028,1201-1203): {error}",
            ) from error
        return rgb * (255.0 / (2**bits - 1))
    bits = int(dataset.get("BitsStored", dataset.get("BitsAllocated", 8)))
    return pixels.astype(np.float32) * (255.0 / (2**bits - 1))


def _greyscale(dataset: Dataset, pixels: np.ndarray, source: str | Path) -> np.ndarray:
    slope = dataset.get("RescaleSlope")
    try:
        constant = slope is not None and float(slope) == 0
    except (TypeError, ValueError) as error:
        raise DicomInputError(source, f"Rescale Slope (0028,1053) is not a number: {slope!r}") from error
    if constant:
        raise DicomInputError(source, "Rescale Slope (0028,1053) is 0: every pixel would have the same value")
    values = np.asarray(apply_modality_lut(pixels, dataset), dtype=np.float32)
    if str(dataset.PhotometricInterpretation) == "MONOCHROME1":
        bits = int(dataset.get("BitsStored", 16))
        signed = int(dataset.get("PixelRepresentation", 0)) == 1
        low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
        ends = np.asarray(apply_modality_lut(np.array([low, high]), dataset), dtype=np.float32)
        values = float(ends.min() + ends.max()) - values
    return values
