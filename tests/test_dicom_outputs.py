"""SEG, SC and SR for every kind of input, checked by reading them back with highdicom, validating them
with dciodvfy (dicom3tools) and converting the SEG with dcmqi's segimage2itkimage (3D Slicer's reader)."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from medcam_dicom.dicom.pipeline import explain_paths
from medcam_dicom.dicom.settings import OutputSettings
from medcam_dicom.models.description import ExplainSpec
from medcam_dicom.models.loading import load_model
from tests.dicom_inputs import (
    copy_file,
    copy_with_new_uids,
    ct_series,
    dciodvfy_errors,
    fast_description,
    pixelmed_sr_reports,
)

UID_ROOT = "1.2.826.0.1.3680043.10.999."


@pytest.fixture(scope="module")
def explained(tmp_path_factory):
    """Every test input explained once: ``(results by source file name or 'ct-series', output folder)``."""
    root = tmp_path_factory.mktemp("dicom-outputs")
    inputs = root / "in"
    ct_series(inputs / "ct-series", slices=3)
    for name in ("CT_small.dcm", "MR_small_jp2klossless.dcm", "examples_rgb_color.dcm", "examples_ybr_color.dcm",
                 "examples_palette.dcm", "6154"):
        copy_file(name, inputs / "files")
    for name in ("MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm"):
        copy_with_new_uids(name, inputs / "files")
    ct = fast_description("demo-ct")
    ct = dataclasses.replace(ct, explain=ExplainSpec(min_probability=0.0))  # both classes: two segments
    models = [load_model(ct, "cpu")] + [load_model(fast_description(n), "cpu")
                                        for n in ("demo-mr", "demo-colour", "demo-any")]
    out = root / "out"
    # overlays="all": these inputs are mostly decided "normal", which gets no SEG or SC by default; this module
    # checks the objects themselves (test_dicom_pipeline.py checks which decisions get them: findings first)
    results, skipped, failed = explain_paths([inputs], out, models, OutputSettings(uid_root=UID_ROOT, overlays="all"))
    assert not failed and not skipped
    by_name = {}
    for result in results:
        assert result.status == "explained", result.reason
        first = Path(result.evidence[0].explanation and result.outputs[0]).parent
        sources = {p.name for p in (inputs / "files").iterdir()}
        json_summary = json.loads((first / "result.json").read_text())
        assert json_summary["series_uid"] == result.series_uid
        source_name = next((s for s in sources if str(pydicom.dcmread(inputs / "files" / s, stop_before_pixels=True)
                                                      .SeriesInstanceUID) == result.series_uid), "ct-series")
        by_name[source_name] = result
    return by_name, out, inputs


def _outputs(result, prefix):
    return [p for p in result.outputs if p.name.startswith(prefix)]


def test_every_input_kind_is_explained_with_seg_sc_and_sr(explained):
    results, _, _ = explained
    assert set(results) == {"CT_small.dcm", "MR_small_jp2klossless.dcm", "examples_rgb_color.dcm",
                            "examples_ybr_color.dcm", "examples_palette.dcm", "6154", "MR_small_RLE.dcm.dcm",
                            "MR_small_jpeg_ls_lossless.dcm.dcm", "ct-series"}
    for name, result in results.items():
        assert len(_outputs(result, "SR")) == 1, name
        frames = sorted({i for item in result.evidence for i in item.frame_indices})
        assert len(_outputs(result, "SC")) == len(frames), name
        assert len(_outputs(result, "SEG")) == 1, name
    # multi-frame without a frame of reference (US cine): a SEG on the image's own grid, and the result says so
    assert any("own pixel grid" in note for note in results["examples_ybr_color.dcm"].notes)
    assert results["CT_small.dcm"].model == "demo-ct" and results["6154"].model == "demo-any"
    assert results["examples_rgb_color.dcm"].model == "demo-colour"
    assert results["MR_small_RLE.dcm.dcm"].model == "demo-mr"


def test_seg_pixels_by_source_instance_equal_the_evidence_masks(explained):
    results, _, _ = explained
    for name, result in results.items():
        for seg_path in _outputs(result, "SEG"):
            seg = hd.seg.segread(seg_path)
            assert seg.SegmentationType == "BINARY"
            assert seg.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
            numbers = {int(d.SegmentNumber): d.SegmentLabel for d in seg.SegmentSequence}
            source_uids = [str(i.ReferencedSOPInstanceUID) for i in seg.ReferencedSeriesSequence[0]
                           .ReferencedInstanceSequence]
            first_source = seg.PerFrameFunctionalGroupsSequence[0].DerivationImageSequence[0].SourceImageSequence[0]
            if "ReferencedFrameNumber" in first_source:  # a multi-frame source (US cine)
                # frame by frame: the source frame each SEG frame names, its segment, its pixels
                shared = seg.SharedFunctionalGroupsSequence[0]
                pixels = pydicom.dcmread(seg_path).pixel_array.astype(bool)
                for position, item in enumerate(seg.PerFrameFunctionalGroupsSequence):
                    source = item.DerivationImageSequence[0].SourceImageSequence[0]
                    identification = item.get("SegmentIdentificationSequence") or shared.SegmentIdentificationSequence
                    class_name = numbers[int(identification[0].ReferencedSegmentNumber)].removeprefix(
                        "Med-CAM evidence: ")
                    expected = np.zeros((int(seg.Rows), int(seg.Columns)), bool)
                    for evidence in result.evidence:
                        for index, frame_index in enumerate(evidence.frame_indices):
                            if evidence.class_name == class_name and frame_index + 1 == source.ReferencedFrameNumber:
                                expected |= evidence.mask[index]
                    assert np.array_equal(pixels[position], expected), (name, position)
                continue
            for number, label in numbers.items():
                class_name = label.removeprefix("Med-CAM evidence: ")
                expected = np.zeros((len(source_uids), int(seg.Rows), int(seg.Columns)), bool)
                order = {uid: k for k, uid in enumerate(source_uids)}
                explained_any = False
                for item in result.evidence:
                    if item.class_name != class_name:
                        continue
                    for position, frame_index in enumerate(item.frame_indices):
                        uid = result_frame_uid(explained, name, frame_index)
                        if uid in order:
                            expected[order[uid]] |= item.mask[position]
                            explained_any = True
                assert explained_any, (name, label)
                pixels = seg.get_pixels_by_source_instance(source_sop_instance_uids=source_uids,
                                                           segment_numbers=[number])
                assert np.array_equal(pixels[..., 0].astype(bool), expected), (name, label)


def result_frame_uid(explained, name, frame_index):
    """SOP Instance UID of frame ``frame_index`` of a result's series (single-frame sources)."""
    results, _, inputs = explained
    from medcam_dicom.dicom.read import scan_inputs
    from medcam_dicom.dicom.series import assemble_series

    folder = inputs / "ct-series" if name == "ct-series" else inputs / "files"
    scan = scan_inputs([folder])
    series = assemble_series(scan.series[results[name].series_uid])
    return series.frames[frame_index].instance.sop_instance_uid


def test_every_seg_has_plane_geometry_because_ohif_cannot_show_one_without(explained):
    results, _, _ = explained
    for name, result in results.items():
        for seg_path in _outputs(result, "SEG"):
            seg = pydicom.dcmread(seg_path)
            shared = seg.SharedFunctionalGroupsSequence[0]
            measures = shared.PixelMeasuresSequence[0]
            assert len(measures.PixelSpacing) == 2 and float(measures.SliceThickness) > 0, name
            assert len(shared.PlaneOrientationSequence[0].ImageOrientationPatient) == 6, name
            assert all("PlanePositionSequence" in frame for frame in seg.PerFrameFunctionalGroupsSequence), name
            assert seg.FrameOfReferenceUID
    # an image without geometry (CR) gets its own pixel grid: identity orientation, origin at pixel 0
    seg = pydicom.dcmread(_outputs(results["6154"], "SEG")[0])
    assert [float(v) for v in seg.PerFrameFunctionalGroupsSequence[0].PlanePositionSequence[0].ImagePositionPatient] \
        == [0.0, 0.0, 0.0]
    assert seg.FrameOfReferenceUID.startswith(UID_ROOT)


def test_seg_references_the_source_series_and_keeps_its_grid(explained):
    results, _, inputs = explained
    result = results["ct-series"]
    (seg_path,) = _outputs(result, "SEG")
    seg = pydicom.dcmread(seg_path)
    source = pydicom.dcmread(next((inputs / "ct-series").iterdir()))
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == result.series_uid
    assert len(seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence) == 3
    assert seg.FrameOfReferenceUID == source.FrameOfReferenceUID
    assert (seg.Rows, seg.Columns) == (source.Rows, source.Columns)
    assert seg.StudyInstanceUID == source.StudyInstanceUID and seg.PatientID == source.PatientID
    assert seg.SeriesInstanceUID != source.SeriesInstanceUID and seg.SOPInstanceUID.startswith(UID_ROOT)
    assert int(seg.NumberOfFrames) == 3 * 2  # empty frames kept: 3 slices x 2 segments
    assert len(seg.SegmentSequence) == 2
    segment = seg.SegmentSequence[0]
    assert segment.SegmentAlgorithmType == "AUTOMATIC"
    assert segment.SegmentAlgorithmName.startswith("Med-CAM")
    assert "RecommendedDisplayCIELabValue" in segment
    algorithm = segment.SegmentationAlgorithmIdentificationSequence[0]
    assert algorithm.AlgorithmFamilyCodeSequence[0].CodeMeaning == "Artificial Intelligence"
    assert "AI" in seg.SeriesDescription and seg.ContentQualification == "RESEARCH"
    for frame in seg.PerFrameFunctionalGroupsSequence:
        assert frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID


def test_output_series_are_distinct_and_ai_labelled(explained):
    results, _, _ = explained
    result = results["CT_small.dcm"]
    datasets = [pydicom.dcmread(p, stop_before_pixels=True) for p in result.outputs]
    assert len({d.SeriesInstanceUID for d in datasets}) == 3
    assert len({int(d.SeriesNumber) for d in datasets}) == 3
    assert len({d.SeriesDescription for d in datasets}) == 3
    assert all("AI Med-CAM evidence" in d.SeriesDescription for d in datasets)
    assert {d.Modality for d in datasets} == {"SEG", "OT", "SR"}
    assert all(d.StudyInstanceUID == datasets[0].StudyInstanceUID for d in datasets)


def test_every_result_identifies_the_algorithm_the_way_ihe_ai_results_asks(explained):
    """AIR: a Contributing Equipment item "Processing Equipment" (DCM 109102) with manufacturer, model name,
    software versions and device UID in SEG, SC and SR, naming the algorithm exactly as the SEG's Algorithm
    Identification and the SR's TID 4019 items do; the SEG codes the evidence with CID 217 ("Visual
    explanation" / "Saliency"), the explained class as the type modifier."""
    results, _, _ = explained
    result = results["CT_small.dcm"]
    seg = pydicom.dcmread(_outputs(result, "SEG")[0], stop_before_pixels=True)
    algorithm = seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    devices = set()
    for path in result.outputs:
        if path.suffix != ".dcm":
            continue
        dataset = pydicom.dcmread(path, stop_before_pixels=True)
        # highdicom adds the source's acquisition equipment and itself (the library); ours is the algorithm
        (equipment,) = [item for item in dataset.ContributingEquipmentSequence
                        if item.Manufacturer == dataset.Manufacturer == "medcam-dicom"]
        purpose = equipment.PurposeOfReferenceCodeSequence[0]
        assert (purpose.CodeValue, purpose.CodingSchemeDesignator) == ("109102", "DCM"), path.name
        assert equipment.ManufacturerModelName == algorithm.AlgorithmName
        assert algorithm.AlgorithmVersion in list(equipment.SoftwareVersions)
        devices.add(equipment.DeviceUID)
    assert len(devices) == 1
    sr = pydicom.dcmread(_outputs(result, "SR")[0])
    texts = {item.ConceptNameCodeSequence[0].CodeMeaning: item.TextValue
             for item in _content_items(sr) if item.ValueType == "TEXT"}
    assert texts["Algorithm Name"] == algorithm.AlgorithmName
    assert texts["Algorithm Version"] == algorithm.AlgorithmVersion
    uids = {item.UID for item in _content_items(sr) if item.ValueType == "UIDREF"
            and item.ConceptNameCodeSequence[0].CodeValue == "121012"}  # Device Observer UID
    assert uids == devices
    classes = set()
    for segment in seg.SegmentSequence:
        category = segment.SegmentedPropertyCategoryCodeSequence[0]
        kind = segment.SegmentedPropertyTypeCodeSequence[0]
        assert (category.CodeValue, category.CodingSchemeDesignator) == ("130401", "DCM")
        assert (kind.CodeValue, kind.CodingSchemeDesignator) == ("130404", "DCM")
        modifier = segment.SegmentedPropertyTypeModifierCodeSequence[0]
        assert segment.SegmentLabel == f"Med-CAM evidence: {modifier.CodeMeaning}"
        classes.add(modifier.CodeValue)
    assert classes == {"CLASS0", "CLASS1"}  # the CT model explains both classes here


def test_secondary_capture_is_rgb_with_the_evidence_burned_in(explained):
    results, _, _ = explained
    result = results["MR_small_jp2klossless.dcm"]
    (sc_path,) = _outputs(result, "SC")
    sc = pydicom.dcmread(sc_path)
    assert sc.PhotometricInterpretation == "RGB" and sc.BurnedInAnnotation == "YES"
    assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID != sc.SOPInstanceUID
    picture = sc.pixel_array
    assert min(picture.shape[:2]) >= 512  # 64 x 64 MR upscaled so that the text is legible
    # on a grey-scale source, colour is the overlay: present wherever there is evidence (a "normal"
    # decision may have none)
    grey = [r for name, r in results.items() if name.startswith(("CT", "MR", "ct-series"))]
    with_evidence = [r for r in grey if r.evidence and r.evidence[0].mask.any() and not r.evidence[0].mask.all()]
    assert with_evidence
    for result in with_evidence:
        picture = pydicom.dcmread(_outputs(result, "SC")[0]).pixel_array
        if picture.ndim == 4:
            picture = picture[0]
        if (np.abs(picture[..., 0].astype(int) - picture[..., 2]) > 40).mean() > 0.01:
            break
    else:
        raise AssertionError("no Secondary Capture shows a coloured evidence overlay")
    frames = pydicom.dcmread(_outputs(results["examples_ybr_color.dcm"], "SC")[-1])
    assert frames.SourceImageSequence[0].ReferencedFrameNumber == 30


def _content_items(dataset):
    for item in dataset.get("ContentSequence", []):
        yield item
        yield from _content_items(item)


def test_sr_carries_the_numbers_and_references_the_seg(explained):
    results, _, _ = explained
    result = results["CT_small.dcm"]
    (sr_path,) = _outputs(result, "SR")
    (seg_path,) = _outputs(result, "SEG")
    sr = hd.sr.srread(sr_path)
    assert sr.SOPClassUID == pydicom.uid.Comprehensive3DSRStorage
    assert sr.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    values = {}
    for item in _content_items(sr):
        if item.ValueType == "NUM":
            values.setdefault(item.ConceptNameCodeSequence[0].CodeValue, []).append(
                float(item.MeasuredValueSequence[0].NumericValue))
    assert len(result.evidence) == 2  # both classes of the one slice
    assert values["PROB"] == pytest.approx([e.explanation.probability for e in result.evidence], abs=1e-4)
    assert values["PROBMASKED"] == pytest.approx([e.explanation.masked_probability for e in result.evidence],
                                                 abs=1e-4)
    assert values["AREAFRAC"] == pytest.approx([e.area_fraction for e in result.evidence], abs=1e-4)
    faithful = [item.ConceptCodeSequence[0].CodeMeaning for item in _content_items(sr)
                if item.ValueType == "CODE" and item.ConceptNameCodeSequence[0].CodeValue == "FAITHFUL"]
    assert faithful == ["Yes" if e.explanation.faithful else "No" for e in result.evidence]
    # the null check: the share of random regions keeping the decision, and the verdict it leads to
    assert values["RANDKEEP"] == pytest.approx([e.explanation.random_keep for e in result.evidence], abs=1e-4)
    specific = [item.ConceptCodeSequence[0].CodeMeaning for item in _content_items(sr)
                if item.ValueType == "CODE" and item.ConceptNameCodeSequence[0].CodeValue == "SPECIFIC"]
    assert specific == ["Yes" if e.explanation.specific else "No" for e in result.evidence]
    seg_uid = pydicom.dcmread(seg_path, stop_before_pixels=True).SOPInstanceUID
    referenced = [ref.ReferencedSOPInstanceUID for item in _content_items(sr)
                  for ref in item.get("ReferencedSOPSequence", [])]
    assert seg_uid in referenced
    assert sr.ContentQualification == "RESEARCH" and sr.CompletionFlag == "COMPLETE"


def test_dciodvfy_reports_no_errors(explained):
    results, _, _ = explained
    checked = 0
    for name, result in results.items():
        for path in _outputs(result, "SEG") + _outputs(result, "SR") + _outputs(result, "SC")[:1]:
            errors = dciodvfy_errors(path)
            assert not errors, (name, path.name, errors)
            checked += 1
    assert checked >= 20


def test_pixelmed_sr_validator_reports_no_errors(explained):
    """pixelmed's DicomSRValidator (what IHE AI Results testing runs): no errors in any SR (it found the
    Measurement Method related by CONTAINS in every group), and the algorithm is identified where the
    templates put it (per measurement), with the templates' code meanings. Left as warnings: our private
    "decision kept" / "specific" evaluations, which no template lists."""
    results, _, _ = explained
    paths = {path: name for name, result in results.items() for path in _outputs(result, "SR")}
    assert len(paths) == len(results)
    for path, report in pixelmed_sr_reports(list(paths)).items():
        assert not [line for line in report if line.startswith("Error")], (paths[path], report)
        unexpected = [line for line in report if "99MEDCAM" not in line]
        assert not unexpected, (paths[path], unexpected)


@pytest.mark.parametrize("name", ["ct-series", "CT_small.dcm", "examples_ybr_color.dcm"])
def test_dcmqi_segimage2itkimage_reads_our_seg_as_our_mask(explained, tmp_path, name):
    results, _, _ = explained
    result = results[name]
    (seg_path,) = _outputs(result, "SEG")
    files = _segimage2itkimage(seg_path, tmp_path)
    meta = json.loads((tmp_path / "meta.json").read_text())
    labels = [s["SegmentLabel"] for group in meta["segmentAttributes"] for s in group]
    for label, path in zip(labels, files):
        class_name = label.removeprefix("Med-CAM evidence: ")
        converted = sitk.GetArrayFromImage(sitk.ReadImage(str(path))).astype(bool)  # (slices, rows, columns)
        expected = np.zeros(converted.shape, bool)
        for item in result.evidence:
            if item.class_name == class_name:
                for position, frame_index in enumerate(item.frame_indices):
                    expected[frame_index] |= item.mask[position]  # our frames are sorted along the normal
        assert np.array_equal(converted, expected), label


def _segimage2itkimage(seg_path: Path, out: Path) -> list[Path]:
    """dcmqi's conversion of a SEG to NRRD (one file per segment, in segment order) into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    tool = shutil.which("segimage2itkimage") or str(Path(__import__("sys").executable).parent / "segimage2itkimage")
    run = subprocess.run([tool, "--inputDICOM", str(seg_path), "--outputDirectory", str(out),
                          "--outputType", "nrrd"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    return sorted(out.glob("*.nrrd"), key=lambda p: int(p.stem))


def test_a_volume_explained_in_3d_converts_with_dcmqi_voxel_for_voxel_on_the_ct_grid(tmp_path):
    """A CT volume explained by a 3D model: dcmqi (3D Slicer's SEG reader) gives back our mask voxel for
    voxel, on the CT's own grid (origin, spacing, direction), and dciodvfy finds no error in the SEG."""
    from medcam_dicom.dicom.examples import write_ct_volume_series

    paths, _ = write_ct_volume_series(tmp_path / "in", slices=40, size=96, pixel_spacing=0.8, slice_spacing=2.0)
    model = load_model(fast_description("demo-ct3d", max_steps=40, min_steps=5), "cpu")
    (result,), _, failed = explain_paths(paths, tmp_path / "out", [model])
    assert not failed and result.status == "explained", result.reason
    (item,) = result.evidence
    assert item.mask.shape == (40, 96, 96) and item.mask.any()
    (seg_path,) = _outputs(result, "SEG")
    assert not dciodvfy_errors(seg_path)
    (nrrd,) = _segimage2itkimage(seg_path, tmp_path / "nrrd")
    image = sitk.ReadImage(str(nrrd))
    converted = sitk.GetArrayFromImage(image).astype(bool)  # (slices, rows, columns)
    expected = np.zeros((40, 96, 96), bool)
    for position, frame_index in enumerate(item.frame_indices):
        expected[frame_index] = item.mask[position]  # frames sorted feet to head, as the files were written
    # dcmqi writes the extent of the segment's frames; place it on the CT's grid by its origin
    first = pydicom.dcmread(paths[0], stop_before_pixels=True)
    offset = round((image.GetOrigin()[2] - float(first.ImagePositionPatient[2])) / 2.0)
    assert image.GetSize()[:2] == (96, 96) and 0 <= offset and offset + converted.shape[0] <= 40
    assert np.allclose(image.GetSpacing(), (0.8, 0.8, 2.0), atol=1e-3)
    assert np.allclose(image.GetDirection(), np.eye(3).flatten(), atol=1e-6)
    assert np.allclose(image.GetOrigin()[:2], [float(v) for v in first.ImagePositionPatient[:2]], atol=1e-3)
    placed = np.zeros_like(expected)
    placed[offset : offset + converted.shape[0]] = converted
    assert np.array_equal(placed, expected)


def test_results_are_deterministic_so_a_resend_is_deduplicated(explained, tmp_path):
    results, _, inputs = explained
    source = [inputs / "files" / "CT_small.dcm"]
    settings = OutputSettings(uid_root=UID_ROOT, overlays="all")
    ct = dataclasses.replace(fast_description("demo-ct"), explain=ExplainSpec(min_probability=0.0))
    (again,), _, _ = explain_paths(source, tmp_path / "same", [load_model(ct, "cpu")], settings)
    (other,), _, _ = explain_paths(source, tmp_path / "other", [load_model(fast_description("demo-ct"), "cpu")],
                                   settings)

    def uids(result):
        return {p.name: pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in result.outputs}

    assert uids(again) == uids(results["CT_small.dcm"])  # same input, same configuration: same objects
    assert not set(uids(other).values()) & set(uids(again).values())  # another configuration: new UIDs
