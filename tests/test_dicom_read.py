"""Reading what hospitals send: pixel decoding for every photometric interpretation and transfer syntax,
series assembly by geometry, and clear errors for bad files."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from medcam_dicom.dicom.errors import DicomInputError, NotAnImageError
from medcam_dicom.dicom.pixels import decode_frames
from medcam_dicom.dicom.read import read_instance, scan_inputs
from medcam_dicom.dicom.series import assemble_series
from tests.dicom_inputs import bundled, copy_with_new_uids, ct_series


def _frames(name: str) -> np.ndarray:
    path = bundled(name)
    return decode_frames(pydicom.dcmread(path), path)


@pytest.mark.parametrize("variant", ["MR_small_RLE.dcm", "MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm",
                                     "MR_small_implicit.dcm", "MR_small_bigendian.dcm"])
def test_compressed_and_big_endian_mr_decode_to_the_same_pixels(variant):
    assert np.array_equal(_frames(variant), _frames("MR_small.dcm"))


@pytest.mark.parametrize("name, shape", [
    ("image_dfl.dcm", (1, 512, 512, 1)),  # deflated explicit VR little endian
    ("JPGExtended.dcm", (1, 1024, 256, 1)),  # JPEG extended, 12 bit
    ("SC_rgb_jpeg_gdcm.dcm", (1, 100, 100, 3)),  # JPEG lossless
    ("JPEGLSNearLossless_16.dcm", (1, 50, 10, 1)),  # JPEG-LS near-lossless
    ("SC_rgb_gdcm_KY.dcm", (1, 100, 100, 3)),  # JPEG 2000
    ("SC_rgb_rle_2frame.dcm", (2, 100, 100, 3)),  # RLE, two frames
])
def test_every_compressed_transfer_syntax_decodes(name, shape):
    pixels = _frames(name)
    assert pixels.shape == shape and np.isfinite(pixels).all() and pixels.std() > 0


def test_ct_pixels_are_in_hounsfield_units():
    dataset = pydicom.dcmread(bundled("CT_small.dcm"))
    expected = dataset.pixel_array * float(dataset.RescaleSlope) + float(dataset.RescaleIntercept)
    assert np.allclose(_frames("CT_small.dcm")[0, ..., 0], expected)


def test_monochrome1_is_inverted_so_that_brighter_is_larger():
    dataset = pydicom.dcmread(bundled("6154"))
    assert dataset.PhotometricInterpretation == "MONOCHROME1"
    raw = dataset.pixel_array.astype(float)
    decoded = _frames("6154")[0, ..., 0]
    # inversion is a decreasing affine map of the stored values
    slope = np.polyfit(raw.ravel(), decoded.ravel(), 1)[0]
    assert slope < 0
    assert np.allclose(decoded, decoded.ravel()[0] + slope * (raw - raw.ravel()[0]), atol=1e-3)


@pytest.mark.parametrize("name, frames", [("examples_palette.dcm", 1), ("examples_ybr_color.dcm", 30),
                                          ("SC_ybr_full_422_uncompressed.dcm", 1), ("examples_jpeg2k.dcm", 1),
                                          ("SC_rgb_rle_16bit.dcm", 1)])
def test_colour_images_come_back_as_rgb_in_0_255(name, frames):
    pixels = _frames(name)
    assert pixels.shape[0] == frames and pixels.shape[-1] == 3
    assert 0 <= pixels.min() and pixels.max() <= 255 and pixels.max() > 100


def test_ybr_is_converted_to_rgb():
    path = bundled("SC_ybr_full_422_uncompressed.dcm")
    raw = pydicom.pixels.pixel_array(path, as_rgb=False)
    expected = pydicom.pixels.convert_color_space(raw, "YBR_FULL", "RGB")
    assert np.abs(_frames("SC_ybr_full_422_uncompressed.dcm")[0] - expected).max() <= 1.0
    assert np.abs(raw.astype(float) - expected).max() > 20  # the conversion is not a no-op here


def test_volume_is_sorted_along_the_slice_normal_not_by_instance_number(tmp_path):
    paths = ct_series(tmp_path, slices=4, spacing=2.5)
    scan = scan_inputs([tmp_path])
    (instances,) = scan.series.values()
    series = assemble_series(instances)
    assert series.is_volume
    z = [float(frame.instance.dataset.ImagePositionPatient[2]) for frame in series.frames]
    assert z == sorted(z)
    assert [frame.instance.path for frame in series.frames] == paths  # written in geometric order
    assert [int(f.instance.dataset.InstanceNumber) for f in series.frames] == [4, 3, 2, 1]
    assert series.spacing[0] == pytest.approx(2.5)


def test_non_image_objects_are_skipped_with_a_reason(tmp_path):
    scan = scan_inputs([bundled("liver_1frame.dcm"), bundled("rtplan.dcm")])
    assert not scan.series and not scan.failed
    reasons = dict(scan.skipped)
    assert "SEG" in reasons[str(bundled("liver_1frame.dcm"))]
    assert "RTPLAN" in reasons[str(bundled("rtplan.dcm"))]
    with pytest.raises(NotAnImageError):
        read_instance(bundled("liver_1frame.dcm"))


def test_garbage_named_explicitly_fails_but_is_skipped_inside_a_folder(tmp_path):
    garbage = tmp_path / "garbage.dcm"
    garbage.write_bytes(b"\x00\x01not dicom at all" * 50)
    scan = scan_inputs([garbage])
    assert scan.failed == [(str(garbage), "not a DICOM file (no 'DICM' prefix / File Meta Information)")]
    scan = scan_inputs([tmp_path])
    assert scan.skipped == [(str(garbage), "not a DICOM file")] and not scan.failed


def test_truncated_pixel_data_names_the_file_and_the_tag(tmp_path):
    path = copy_with_new_uids("MR_truncated.dcm", tmp_path)
    instance = read_instance(path)
    with pytest.raises(DicomInputError, match=r"MR_truncated.*Pixel Data \(7FE0,0010\) cannot be decoded"):
        decode_frames(instance.dataset, instance.path)


def test_missing_pixel_data_and_bad_uids_are_named(tmp_path):
    path = copy_with_new_uids("CT_small.dcm", tmp_path, "no-pixels.dcm")
    dataset = pydicom.dcmread(path)
    del dataset.PixelData
    dataset.save_as(path)
    with pytest.raises(DicomInputError, match=r"no-pixels.dcm: has no Pixel Data \(7FE0,0010\)"):
        read_instance(path)
    dataset.SeriesInstanceUID = "../../etc/passwd"
    dataset.save_as(path)
    with pytest.raises(DicomInputError, match=r"SeriesInstanceUID \(0020,000E\) is missing or not a valid UID"):
        read_instance(path)


def test_unsupported_photometric_interpretation_is_named(tmp_path):
    path = copy_with_new_uids("CT_small.dcm", tmp_path, "hsv.dcm")
    dataset = pydicom.dcmread(path)
    dataset.PhotometricInterpretation = "HSV"
    dataset.save_as(path)
    instance = read_instance(path)
    with pytest.raises(DicomInputError, match=r"hsv.dcm: unsupported Photometric Interpretation \(0028,0004\) 'HSV'"):
        decode_frames(instance.dataset, instance.path)


def test_series_mixing_sizes_or_frames_of_reference_is_refused(tmp_path):
    paths = ct_series(tmp_path / "sizes", slices=2)
    small = pydicom.dcmread(paths[1])
    small.Rows, small.Columns = 64, 64
    small.PixelData = small.pixel_array[:64, :64].tobytes()
    small.save_as(paths[1])
    (instances,) = scan_inputs([tmp_path / "sizes"]).series.values()
    with pytest.raises(DicomInputError, match="series mixes image sizes"):
        assemble_series(instances)
    paths = ct_series(tmp_path / "for", slices=2)
    other = pydicom.dcmread(paths[0])
    other.FrameOfReferenceUID = pydicom.uid.generate_uid()
    other.save_as(paths[0])
    (instances,) = scan_inputs([tmp_path / "for"]).series.values()
    with pytest.raises(DicomInputError, match=r"series mixes frames of reference"):
        assemble_series(instances)


def test_image_larger_than_the_limit_is_refused(tmp_path):
    instance = read_instance(bundled("CT_small.dcm"))
    with pytest.raises(DicomInputError, match="exceeds the configured limit of 1000 pixels"):
        decode_frames(instance.dataset, instance.path, max_pixels=1000)
