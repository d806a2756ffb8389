"""The series pipeline and the ``medcam-dicom explain`` command: model choice by rules, 3D volumes, user
classifiers (TorchScript, MONAI bundle), bad input reported per series, nothing written half-way."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
import torch
from monai.networks.nets import ResNet, ViT
from pydicom.uid import generate_uid

from medcam_dicom.cli import main
from medcam_dicom.dicom import pipeline
from medcam_dicom.dicom.pipeline import explain_paths
from medcam_dicom.dicom.settings import OutputSettings
from medcam_dicom.dicom.write_sc import key_frames
from medcam_dicom.models.description import ModelDescriptionError, load_description, parse_description
from medcam_dicom.models.loading import load_model
from tests.dicom_inputs import (
    FAST,
    bundled,
    copy_file,
    copy_with_new_uids,
    ct_series,
    dciodvfy_errors,
    fast_description,
)
from tests.hostile_files import own_copy

#: every decision drawn (SEG, SC): most inputs here are decided "normal", which by default gets an SR only;
#: these tests check the objects, test_findings_first_... checks which decisions get them
DRAW_ALL = OutputSettings(overlays="all")


def test_series_go_to_the_first_model_whose_rules_match(tmp_path):
    copy_file("CT_small.dcm", tmp_path / "in")
    models = [load_model(fast_description("demo-mr"), "cpu")]
    (result,), _, _ = explain_paths([tmp_path / "in"], tmp_path / "out", models)
    assert result.status == "skipped"
    assert result.reason == "no model applies (demo-mr: modality CT not in ['MR'])"
    assert not (tmp_path / "out").exists()


def test_3d_model_explains_the_whole_volume_and_the_seg_covers_every_slice(tmp_path):
    from medcam_dicom.dicom.examples import write_ct_volume_series

    # real CT anatomy with a planted sphere (CT_small's slices alone are "normal" to the 3D demo classifier)
    _, finding = write_ct_volume_series(tmp_path / "in", slices=4, size=128)
    (result,), _, _ = explain_paths([tmp_path / "in"], tmp_path / "out", [load_model(fast_description("demo-ct3d"),
                                                                                      "cpu")])
    assert result.status == "explained", result.reason
    (item,) = result.evidence
    assert item.frame_indices == (0, 1, 2, 3) and item.mask.shape == (4, 128, 128)
    # evidence on the finding: 46 % of the mask when measured; a mask placed by chance holds 1.5 % (its volume)
    share = (item.mask & finding).sum() / item.mask.sum()
    assert item.class_name == "lesion" and share > max(0.3, 10 * finding.mean())
    seg = pydicom.dcmread(next(p for p in result.outputs if p.name.startswith("SEG")))
    assert int(seg.NumberOfFrames) == 4
    # pictures of the key slices only (here: every slice with evidence, at most OutputSettings.key_slices)
    assert sum(p.name.startswith("SC") for p in result.outputs) == len(key_frames(item.mask, 5))
    sr = pydicom.dcmread(next(p for p in result.outputs if p.name == "SR.dcm"))

    def items(dataset):
        for item in dataset.get("ContentSequence", []):
            yield item
            yield from items(item)

    (reference,) = [i for i in items(sr) if i.ValueType == "IMAGE"]
    assert reference.ConceptNameCodeSequence[0].CodeMeaning == "Referenced Segment"  # the volumetric TID 1411
    assert reference.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == seg.SOPInstanceUID
    assert reference.ReferencedSOPSequence[0].ReferencedSegmentNumber == 1


def test_key_slices_of_a_volume_spread_through_the_evidence_and_include_its_peak():
    mask = np.zeros((40, 8, 8), dtype=bool)
    mask[10:30, 2:4, 2:4] = True
    mask[27, :, :] = True  # the slice with the most evidence
    chosen = key_frames(mask, 5)
    assert len(chosen) == 5 and 27 in chosen and chosen == sorted(chosen)
    assert all(mask[i].any() for i in chosen) and chosen[0] == 10
    assert key_frames(mask[:12], 5) == [10, 11]  # fewer slices with evidence than the limit: all of them
    assert key_frames(np.zeros((9, 4, 4), dtype=bool), 5) == [4]  # no evidence: the middle slice
    with pytest.raises(ValueError, match="key slices"):
        key_frames(mask, 0)


def _series_of_two_sizes(folder: Path) -> tuple[list[Path], Path]:
    """A 3-image CT series whose middle image is cropped to 64 x 64; returns (paths, the small one)."""
    paths = ct_series(folder, slices=3)
    small = pydicom.dcmread(paths[1])
    crop = np.ascontiguousarray(small.pixel_array[:64, :64])
    small.Rows, small.Columns = 64, 64
    small.PixelData = crop.tobytes()
    small.save_as(paths[1])
    return paths, paths[1]


def test_a_2d_model_explains_a_series_mixing_sizes_one_seg_sc_and_sr_per_size(tmp_path):
    paths, small = _series_of_two_sizes(tmp_path / "in")
    (result,), _, failed = explain_paths(paths, tmp_path / "out", [load_model(fast_description("demo-ct"), "cpu")],
                                         DRAW_ALL)
    assert not failed and result.status == "explained", result.reason
    assert sorted(e.mask.shape for e in result.evidence) == [(1, 64, 64), (1, 128, 128), (1, 128, 128)]
    names = sorted(p.name for p in result.outputs)
    assert names == ["SC-0001.dcm", "SC-0002.dcm", "SC-0003.dcm", "SEG-1.dcm", "SEG-2.dcm", "SR-1.dcm", "SR-2.dcm"]
    assert any("series mixes image sizes: each size explained" in note for note in result.notes)
    small_uid = pydicom.dcmread(small, stop_before_pixels=True).SOPInstanceUID
    sources = {}
    for path in (p for p in result.outputs if p.name.startswith("SEG")):
        assert not dciodvfy_errors(path), path.name
        seg = hd.seg.segread(path)
        sources[(seg.Rows, seg.Columns)] = {uid for _, _, uid in seg.get_source_image_uids()}
    assert sources[(64, 64)] == {small_uid} and len(sources[(128, 128)]) == 2 and small_uid not in sources[(128, 128)]
    reports = [pydicom.dcmread(p) for p in result.outputs if p.name.startswith("SR")]
    assert len({r.SOPInstanceUID for r in reports}) == 2
    summary = json.loads((result.outputs[0].parent / "result.json").read_text())
    assert sorted(e["size"] for e in summary["evidence"]) == [[64, 64], [128, 128], [128, 128]]


def test_a_3d_model_refuses_a_series_mixing_sizes_naming_the_file(tmp_path):
    paths, small = _series_of_two_sizes(tmp_path / "in")
    (result,), _, _ = explain_paths(paths, tmp_path / "out", [load_model(fast_description("demo-ct3d"), "cpu")])
    assert result.status == "failed" and small.name in result.reason
    assert "series mixes image sizes: Rows x Columns 64 x 64 here, 128 x 128 in" in result.reason


def test_3d_model_refuses_a_single_image(tmp_path):
    copy_file("CT_small.dcm", tmp_path / "in")
    (result,), _, _ = explain_paths([tmp_path / "in"], tmp_path / "out", [load_model(fast_description("demo-ct3d"),
                                                                                      "cpu")])
    assert result.status == "failed" and "explains volumes, but the series has a single frame" in result.reason


def test_bad_series_are_reported_by_file_and_the_others_still_processed(tmp_path):
    good = copy_file("CT_small.dcm", tmp_path / "in")
    copy_with_new_uids("MR_truncated.dcm", tmp_path / "in", "truncated.dcm")
    large = copy_with_new_uids("CT_small.dcm", tmp_path / "in", "large.dcm")
    models = [load_model(dataclasses.replace(fast_description("demo-any"), max_pixels=10_000), "cpu")]
    results, _, failed = explain_paths([tmp_path / "in"], tmp_path / "out", models)
    assert not failed
    by_status = {r.status: r for r in results if r.status == "failed"}
    reasons = sorted(r.reason for r in results if r.status == "failed")
    assert any("truncated.dcm: Pixel Data (7FE0,0010) cannot be decoded" in r for r in reasons)
    assert any("exceeds the configured limit of 10000" in r for r in reasons)
    assert sum(r.status == "failed" for r in results) == 3  # both CT copies are 128 x 128 > 10000 pixels
    assert by_status and good.exists() and large.exists()
    models = [load_model(fast_description("demo-any"), "cpu")]
    results, _, _ = explain_paths([tmp_path / "in"], tmp_path / "out", models)
    assert sorted(r.status for r in results) == ["explained", "explained", "failed"]


def test_nothing_is_written_when_writing_fails_half_way(tmp_path, monkeypatch):
    copy_file("CT_small.dcm", tmp_path / "in")

    def broken_report(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pipeline, "build_report", broken_report)
    with pytest.raises(OSError, match="disk full"):
        explain_paths([tmp_path / "in"], tmp_path / "out", [load_model(fast_description("demo-ct"), "cpu")])
    leftovers = [p for p in (tmp_path / "out").rglob("*") if p.is_file()] if (tmp_path / "out").exists() else []
    assert leftovers == []


def test_an_unexpected_error_fails_that_series_only_and_names_it(tmp_path, monkeypatch):
    copy_with_new_uids("CT_small.dcm", tmp_path / "in")
    copy_with_new_uids("MR_small.dcm", tmp_path / "in")
    real_report = pipeline.build_report

    def report_failing_on_ct(series, *args, **kwargs):
        if series.modality == "CT":
            raise RuntimeError("a bug")
        return real_report(series, *args, **kwargs)

    monkeypatch.setattr(pipeline, "build_report", report_failing_on_ct)
    models = [load_model(fast_description(name), "cpu") for name in ("demo-ct", "demo-mr")]
    results, _, _ = explain_paths([tmp_path / "in"], tmp_path / "out", models)
    by_modality = {r.label.split()[0]: r for r in results}
    assert by_modality["CT"].status == "failed" and by_modality["MR"].status == "explained"
    assert by_modality["CT"].reason == "CT series 1: unexpected RuntimeError: a bug"

def test_a_rerun_replaces_the_previous_result_of_the_series(tmp_path):
    copy_file("CT_small.dcm", tmp_path / "in")
    models = [load_model(fast_description("demo-ct"), "cpu")]
    (first,), _, _ = explain_paths([tmp_path / "in"], tmp_path / "out", models, DRAW_ALL)
    (second,), _, _ = explain_paths([tmp_path / "in"], tmp_path / "out", models, DRAW_ALL)
    folder = first.outputs[0].parent
    assert sorted(p.name for p in folder.iterdir()) == ["SC-0001.dcm", "SEG-1.dcm", "SR.dcm", "result.json"]
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]  # no staging or retired folders left


def test_torchscript_classifier_is_explained_at_its_output(tmp_path):
    network = ResNet("basic", [1, 1, 1, 1], [8, 16, 32, 64], spatial_dims=2, n_input_channels=1, num_classes=3)
    torch.jit.save(torch.jit.trace(network.eval(), torch.zeros(1, 1, 64, 64)), tmp_path / "model.ts")
    (tmp_path / "model.yaml").write_text(
        "name: scripted\nclassifier: {torchscript: model.ts}\nclass_names: [a, b, c]\n"
        "input: {size: [64, 64], intensity: {percentiles: [1, 99]}}\n"
        f"medcam: {json.dumps(FAST)}\n")
    model = load_model(load_description(tmp_path / "model.yaml"), "cpu")
    assert model.layers == ["logits"]
    copy_file("CT_small.dcm", tmp_path / "in")
    (result,), _, _ = explain_paths([tmp_path / "in"], tmp_path / "out", [model])
    assert result.status == "explained", result.reason
    assert result.evidence[0].class_name in ("a", "b", "c") and result.evidence[0].mask.shape == (1, 128, 128)


#: MONAI's ResNet as a bundle's network_def (the networks the tests build match it)
RESNET_DEF = {"_target_": "monai.networks.nets.ResNet", "block": "basic", "layers": [1, 1, 1, 1],
              "block_inplanes": [8, 16, 32, 64], "spatial_dims": 2, "n_input_channels": 1, "num_classes": 2}

def _bundle(folder, network_def: dict, network: torch.nn.Module):
    """A MONAI bundle folder (configs/inference.json + models/model.pt) made outside our code."""
    (folder / "configs").mkdir(parents=True, exist_ok=True)
    (folder / "models").mkdir(exist_ok=True)
    (folder / "configs" / "inference.json").write_text(json.dumps({"network_def": network_def}))
    torch.save(network.state_dict(), folder / "models" / "model.pt")
    return folder


def test_monai_bundle_classifier_loads_network_def_and_weights(tmp_path):
    network = ResNet("basic", [1, 1, 1, 1], [8, 16, 32, 64], spatial_dims=2, n_input_channels=1, num_classes=2)
    bundle = _bundle(tmp_path / "bundle", RESNET_DEF, network)
    description = parse_description({"classifier": {"bundle": str(bundle)}, "class_names": ["no", "yes"],
                                     "input": {"size": [64, 64]}, "layers": ["layer4"], "medcam": FAST})
    model = load_model(description, "cpu")
    assert torch.equal(model.network.conv1.weight, network.conv1.weight)
    assert model.layers == ["layer4"]
    copy_file("MR_small.dcm", tmp_path / "in")
    (result,), _, _ = explain_paths([tmp_path / "in"], tmp_path / "out", [model])
    assert result.status == "explained", result.reason


def test_a_classifier_returning_a_tuple_is_explained_on_the_dicom_path(tmp_path):
    """MONAI's ViT returns (logits, hidden states): the DICOM path takes the logits as the Python API does."""
    settings = {"in_channels": 1, "img_size": [32, 32], "patch_size": 8, "hidden_size": 32, "mlp_dim": 64,
                "num_layers": 2, "num_heads": 4, "classification": True, "num_classes": 2, "spatial_dims": 2}
    torch.manual_seed(0)
    bundle = _bundle(tmp_path / "vit", {"_target_": "monai.networks.nets.ViT", **settings}, ViT(**settings))
    description = parse_description({"classifier": {"bundle": str(bundle)}, "class_names": ["no", "yes"],
                                     "input": {"size": [32, 32]}, "medcam": FAST})
    model = load_model(description, "cpu")
    copy_file("CT_small.dcm", tmp_path / "in")
    (result,), _, failed = explain_paths([tmp_path / "in"], tmp_path / "out", [model])
    assert not failed and result.status == "explained", result.reason
    assert result.evidence[0].class_name in ("no", "yes")


def test_result_uids_follow_the_weights_content_not_the_file_names(tmp_path):
    """Retrained weights saved under the same name give new result UIDs (a PACS would drop the new results as
    duplicates otherwise); the same weights, rewritten, give the same UIDs."""
    networks = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        networks.append(ResNet("basic", [1, 1, 1, 1], [8, 16, 32, 64], spatial_dims=2, n_input_channels=1,
                               num_classes=2))
    description = parse_description({"classifier": {"bundle": str(tmp_path / "bundle")}, "class_names": ["no", "yes"],
                                     "input": {"size": [64, 64]}, "medcam": FAST})
    copy_file("CT_small.dcm", tmp_path / "in")

    def seg_uid_with(network: torch.nn.Module, run: str) -> tuple[str, str]:
        _bundle(tmp_path / "bundle", RESNET_DEF, network)
        model = load_model(description, "cpu")
        (result,), _, _ = explain_paths([tmp_path / "in"], tmp_path / run, [model])
        assert result.status == "explained", result.reason
        seg = pydicom.dcmread(next(p for p in result.outputs if p.name.startswith("SEG")))
        return model.fingerprint, str(seg.SOPInstanceUID)

    first = seg_uid_with(networks[0], "first")
    retrained = seg_uid_with(networks[1], "retrained")
    assert retrained[0] != first[0] and retrained[1] != first[1]
    _bundle(tmp_path / "bundle", RESNET_DEF, networks[0])  # the first weights again, in a new file
    assert load_model(description, "cpu").fingerprint == first[0]


@pytest.mark.parametrize("raw, message", [
    ({"classifier": {"demo": "ct"}, "input": {"size": [64, 64]}, "colour": 1}, "unknown key\\(s\\): colour"),
    ({"classifier": {"demo": "ct", "torchscript": "x"}, "input": {"size": [64, 64]}}, "exactly one of"),
    ({"classifier": {"demo": "ct"}, "input": {"size": [64, 64], "intensity": {"window": [40]}}}, "'input'"),
    ({"classifier": {"demo": "ct"}, "input": {"size": [64, 64]}, "mode": "3d"}, "does not fit input.size"),
    ({"classifier": {"demo": "ct"}, "input": {"size": [64, 64]}, "medcam": {"max_step": 3}}, "max_step"),
    ({"classifier": {"demo": "ct"}, "class_names": ["a"], "explain": {"classes": ["b"]},
      "input": {"size": [64, 64]}}, "not all in class_names"),
])
def test_model_description_errors_name_the_key(raw, message):
    with pytest.raises(ModelDescriptionError, match=message):
        parse_description(raw, "site.yaml")


def test_model_description_file_errors_name_the_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("classifier: [unclosed\n")
    with pytest.raises(ModelDescriptionError, match="broken.yaml: cannot be parsed"):
        load_description(path)
    with pytest.raises(ModelDescriptionError, match="not a shipped model"):
        load_description("no-such-model")
    missing = parse_description({"classifier": {"torchscript": "absent.ts"}, "class_names": ["a"],
                                 "input": {"size": [64, 64]}}, str(path), tmp_path)
    with pytest.raises(ModelDescriptionError, match="absent.ts does not exist"):
        load_model(missing, "cpu")


def test_cli_explain_writes_results_and_a_summary_and_fails_for_bad_files(tmp_path, capsys):
    copy_file("CT_small.dcm", tmp_path / "in")
    copy_file("liver_1frame.dcm", tmp_path / "in")
    garbage = tmp_path / "garbage.dcm"
    garbage.write_bytes(b"nope" * 100)
    code = main(["explain", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--max-steps", "3",
                 "--overlays", "all", "--uid-root", "1.2.826.0.1.3680043.10.999."])
    printed = capsys.readouterr().out
    assert code == 0
    assert "skipped" in printed and "liver_1frame.dcm" in printed and "a SEG object" in printed
    assert "demo-ct" in printed and "Med-CAM evidence" in printed
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    (result,) = summary["results"]
    assert result["status"] == "explained" and len(result["outputs"]) == 3
    assert all(pydicom.dcmread(p).SOPInstanceUID.startswith("1.2.826.0.1.3680043.10.999.") for p in result["outputs"])
    code = main(["explain", str(tmp_path / "in"), str(garbage), "--out", str(tmp_path / "out2"), "--max-steps", "3"])
    printed = capsys.readouterr().out
    assert code == 1 and "garbage.dcm" in printed and "not a DICOM file" in printed


def test_cli_explain_reports_a_bad_model_file_without_a_traceback(tmp_path, capsys):
    code = main(["explain", str(bundled("CT_small.dcm")), "--out", str(tmp_path), "--model", "no-such-model"])
    assert code == 2
    assert "not a shipped model" in capsys.readouterr().err


def test_enhanced_multiframe_ct_gets_one_seg_over_its_frames(tmp_path):
    legacy = [pydicom.dcmread(p) for p in ct_series(tmp_path / "slices", slices=3)]
    enhanced = hd.legacy.LegacyConvertedEnhancedCTImage(legacy, series_instance_uid=generate_uid(), series_number=5,
                                                        sop_instance_uid=generate_uid(), instance_number=1)
    enhanced.save_as(tmp_path / "enhanced.dcm")
    (result,), _, _ = explain_paths([tmp_path / "enhanced.dcm"], tmp_path / "out",
                                    [load_model(fast_description("demo-ct"), "cpu")], DRAW_ALL)
    assert result.status == "explained", result.reason
    seg = hd.seg.segread(next(p for p in result.outputs if p.name.startswith("SEG")))
    pixels = seg.get_pixels_by_source_frame(enhanced.SOPInstanceUID, [1, 2, 3], segment_numbers=[1])[..., 0]
    expected = np.concatenate([item.mask for item in sorted(result.evidence, key=lambda e: e.frame_indices)])
    assert np.array_equal(pixels.astype(bool), expected)


def test_multiframe_without_patient_geometry_gets_a_seg_on_its_own_grid_and_says_so(tmp_path):
    dataset = pydicom.dcmread(bundled("examples_ybr_color.dcm"))
    dataset.FrameOfReferenceUID = generate_uid()  # a frame of reference alone is not geometry
    dataset.SeriesInstanceUID, dataset.SOPInstanceUID = generate_uid(), generate_uid()
    dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    dataset.save_as(tmp_path / "cine.dcm")
    models = [load_model(fast_description("demo-colour", max_steps=2, min_steps=1), "cpu")]
    (result,), _, _ = explain_paths([tmp_path / "cine.dcm"], tmp_path / "out", models, DRAW_ALL)
    assert result.status == "explained", result.reason
    names = [p.name for p in result.outputs]
    assert names.count("SEG-1.dcm") == 1 and "SR.dcm" in names and len(names) == 32  # SEG, 30 SC, SR
    assert any("own pixel grid" in note for note in result.notes)
    seg = pydicom.dcmread(result.outputs[0], stop_before_pixels=True)
    assert seg.FrameOfReferenceUID != dataset.FrameOfReferenceUID  # not the patient's: a grid of its own
    assert int(seg.NumberOfFrames) == 30
    assert dciodvfy_errors(result.outputs[0]) == []
    referenced = sorted(int(item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedFrameNumber)
                        for item in seg.PerFrameFunctionalGroupsSequence)
    assert referenced == list(range(1, 31))


def _hostile(folder, name: str, change) -> str:
    """CT_small in a study of its own with one header attribute broken by ``change``; returns the file name."""
    return own_copy(folder, name, "CT_small.dcm", change).name


def _raw(dataset, keyword: str, vr: str, value: bytes) -> None:
    """Put bytes that pydicom would refuse to encode (a DS that is no number) straight into the dataset."""
    from pydicom.datadict import tag_for_keyword
    from pydicom.dataelem import RawDataElement

    tag = tag_for_keyword(keyword)
    dataset._dict[tag] = RawDataElement(pydicom.tag.Tag(tag), vr, len(value), value, 0, False, True)


def test_hostile_headers_are_refused_or_noted_by_name_and_never_stop_the_batch(tmp_path, capsys):
    """Broken geometry is not copied into the results (the SEG gets the image's own grid, dciodvfy finds no
    error), the result names the attribute and its tag, a file without any SOP Class UID is refused by
    name, and none of it stops the other files."""
    folder = tmp_path / "in"
    names = {
        "no-sop-class": _hostile(folder, "no-sop-class", lambda d: (delattr(d, "SOPClassUID"),
                                                                    delattr(d.file_meta, "MediaStorageSOPClassUID"))),
        "sop-class-in-meta-only": _hostile(folder, "sop-class-in-meta-only", lambda d: delattr(d, "SOPClassUID")),
        "position-2-values": _hostile(folder, "position-2-values", lambda d: setattr(d, "ImagePositionPatient",
                                                                                    [1, 2])),
        "thickness-text": _hostile(folder, "thickness-text", lambda d: _raw(d, "SliceThickness", "DS", b"thick ")),
        "zero-spacing": _hostile(folder, "zero-spacing", lambda d: setattr(d, "PixelSpacing", [0, 0])),
        "zero-orientation": _hostile(folder, "zero-orientation", lambda d: setattr(d, "ImageOrientationPatient",
                                                                                  [0] * 6)),
        "good": _hostile(folder, "good", lambda d: None),
    }
    code = main(["explain", str(folder), "--out", str(tmp_path / "out"), "--model", "demo-ct", "--max-steps", "3",
                 "--overlays", "all"])
    printed = capsys.readouterr().out
    assert code == 1 and "Traceback" not in printed
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    (failed,) = summary["failed_files"]
    assert failed[0].endswith(names["no-sop-class"]) and "SOPClassUID (0008,0016) is missing" in failed[1]
    results = summary["results"]
    assert [r["status"] for r in results] == ["explained"] * 6, [r["reason"] for r in results]
    notes = "\n".join(note for r in results for note in r["notes"])
    for name, expected in (("position-2-values", "ImagePositionPatient (0020,0032) has 2 value(s), expected 3"),
                           ("thickness-text", "SliceThickness (0018,0050) is not a number"),
                           ("zero-spacing", "PixelSpacing (0028,0030) is not positive numbers"),
                           ("zero-orientation", "ImageOrientationPatient (0020,0037) is not two orthogonal unit")):
        assert f"{names[name]}: {expected}" in notes
    outputs = [Path(p) for r in results for p in r["outputs"] if p.endswith(".dcm")]
    assert len(outputs) == 6 * 3
    for path in outputs:
        errors = dciodvfy_errors(path)
        assert not errors, (path, errors)
        dataset = pydicom.dcmread(path)
        if dataset.Modality == "SEG":
            hd.seg.segread(path)  # highdicom reads every SEG back
            measures = dataset.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
            assert all(float(v) > 0 for v in measures.PixelSpacing) and float(measures.SliceThickness) > 0


def _sr_findings(path: Path) -> list[tuple[str, bool]]:
    """Per SR measurement group: the finding type's meaning and whether it references a SEG segment."""
    content = hd.sr.srread(path).content
    with_segment = content.get_planar_roi_measurement_groups() + content.get_volumetric_roi_measurement_groups()
    return sorted([(str(g.finding_type.meaning), True) for g in with_segment]
                  + [(str(g.finding_type.meaning), False) for g in content.get_image_measurement_groups()])


def test_findings_first_only_findings_are_drawn_every_decision_is_reported(tmp_path):
    """With the shipped descriptions (findings: [lesion]) a "normal" decision gets no SEG segment and no
    Secondary Capture, only its SR group (referencing the image); a lesion does get them. --overlays all
    draws both."""
    from medcam_dicom.dicom.examples import write_lesion_examples
    from medcam_dicom.models.description import ExplainSpec

    lesion = write_lesion_examples(tmp_path / "in")[0]  # the CT
    normal = copy_with_new_uids("CT_small.dcm", tmp_path / "in")
    both = dataclasses.replace(fast_description("demo-ct"), explain=ExplainSpec(min_probability=0.0))
    assert both.findings == ("lesion",)
    model = load_model(both, "cpu")

    results, _, _ = explain_paths([lesion, normal], tmp_path / "out", [model])
    assert len(results) == 2 and all(r.status == "explained" for r in results), [r.reason for r in results]
    for result in results:
        names = [p.name for p in result.outputs]
        assert {e.class_name for e in result.evidence} == {"normal", "lesion"}
        seg = pydicom.dcmread(result.outputs[names.index("SEG-1.dcm")])
        labels = [str(item.SegmentLabel) for item in seg.SegmentSequence]
        assert labels == ["Med-CAM evidence: lesion"], (result.label, labels)
        assert sum(n.startswith("SC-") for n in names) == 1  # the lesion's capture only
        sr = result.outputs[names.index("SR.dcm")]
        assert _sr_findings(sr) == [("lesion", True), ("normal", False)]
        assert dciodvfy_errors(sr) == [] and dciodvfy_errors(seg.filename) == []

    top_one = load_model(fast_description("demo-ct"), "cpu")
    (result,), _, _ = explain_paths([normal], tmp_path / "top1", [top_one])
    assert [e.class_name for e in result.evidence] == ["normal"]
    assert [p.name for p in result.outputs] == ["SR.dcm"]  # no SEG, no SC: nothing to draw
    assert _sr_findings(result.outputs[0]) == [("normal", False)]
    assert dciodvfy_errors(result.outputs[0]) == []

    (drawn,), _, _ = explain_paths([normal], tmp_path / "all", [top_one], OutputSettings(overlays="all"))
    assert sorted(p.name for p in drawn.outputs) == ["SC-0001.dcm", "SEG-1.dcm", "SR.dcm"]


def test_findings_must_be_classes_of_the_model(tmp_path):
    with pytest.raises(ModelDescriptionError, match="'findings'"):
        parse_description({"classifier": {"demo": "ct"}, "class_names": ["normal", "lesion"], "findings": ["tumour"],
                           "input": {"size": [128, 128]}})
    description = dataclasses.replace(load_description("demo-ct"), findings=("tumour",))
    with pytest.raises(ModelDescriptionError, match=r"'findings' \['tumour'\] are not classes"):
        load_model(description, "cpu")


def test_images_repeated_at_one_position_are_explained_one_by_one_and_refused_as_a_volume(tmp_path):
    """The same slice sent twice under new SOP Instance UIDs (pydicom-data's 693_* files are such a series):
    a 2D model explains both, each SEG keeps every plane position once; a 3D model refuses naming the tag."""
    series_uid = generate_uid()
    paths = [copy_with_new_uids("CT_small.dcm", tmp_path / "in", f"copy-{k}.dcm", series_uid) for k in range(2)]
    (result,), _, _ = explain_paths(paths, tmp_path / "out", [load_model(fast_description("demo-ct"), "cpu")],
                                    DRAW_ALL)
    assert result.status == "explained", result.reason
    assert any("share one position" in note and "explained image by image" in note for note in result.notes)
    segs = [p for p in result.outputs if p.name.startswith("SEG")]
    assert len(segs) == 2 and all(dciodvfy_errors(p) == [] for p in segs)
    (volume,), _, _ = explain_paths(paths, tmp_path / "out3d", [load_model(fast_description("demo-ct3d"), "cpu")])
    assert volume.status == "failed" and "copy-" in volume.reason and "(0020,0032)" in volume.reason


def test_a_missing_frame_of_reference_is_derived_under_the_sites_uid_root(tmp_path):
    root = "1.2.826.0.1.3680043.10.999."
    _hostile(tmp_path / "in", "no-frame-of-reference", lambda d: delattr(d, "FrameOfReferenceUID"))
    models = [load_model(fast_description("demo-ct"), "cpu")]
    (result,), _, _ = explain_paths([tmp_path / "in"], tmp_path / "out", models, OutputSettings(uid_root=root,
                                                                                              overlays="all"))
    assert result.status == "explained", result.reason
    assert any("Frame of Reference UID (0020,0052) missing" in note for note in result.notes)
    seg = pydicom.dcmread(next(p for p in result.outputs if p.name.startswith("SEG")), stop_before_pixels=True)
    assert seg.FrameOfReferenceUID.startswith(root)
    (again,), _, _ = explain_paths([tmp_path / "in"], tmp_path / "again", models, OutputSettings(uid_root=root,
                                                                                                overlays="all"))
    seg_again = pydicom.dcmread(next(p for p in again.outputs if p.name.startswith("SEG")), stop_before_pixels=True)
    assert seg_again.FrameOfReferenceUID == seg.FrameOfReferenceUID  # the same every run


def test_parametric_map_holds_the_soft_mask_on_the_seg_grid(tmp_path):
    """--parametric-map: per drawn class and SEG, a Parametric Map (quantity DCM 130404 Saliency) whose real
    world values are the explainer's mask probabilities, in [0, 1], highest inside the SEG's evidence, on the
    SEG's grid (same Frame of Reference; an image without geometry gets the same own grid as its SEG); clean
    under dciodvfy. Without the option, none."""
    from medcam_dicom.dicom.examples import write_lesion_examples

    lesion_ct, photo = write_lesion_examples(tmp_path / "in")
    cine = tmp_path / "in" / "cine.dcm"
    dataset = pydicom.dcmread(bundled("examples_ybr_color.dcm"))  # multi-frame, no patient geometry
    dataset.SeriesInstanceUID, dataset.SOPInstanceUID = generate_uid(), generate_uid()
    dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    dataset.save_as(cine)
    models = [load_model(fast_description(name, max_steps=2, min_steps=1), "cpu")
              for name in ("demo-ct", "demo-colour")]
    settings = OutputSettings(overlays="all", parametric_map=True)
    results, _, _ = explain_paths([lesion_ct, photo, cine], tmp_path / "out", models, settings)
    assert [r.status for r in results] == ["explained"] * 3, [r.reason for r in results]
    for result in results:
        maps = [p for p in result.outputs if p.name.startswith("PM-")]
        segs = [pydicom.dcmread(p) for p in result.outputs if p.name.startswith("SEG-")]
        assert len(maps) == len(segs) == 1, result.outputs
        parametric_map, seg = pydicom.dcmread(maps[0]), segs[0]
        assert parametric_map.FrameOfReferenceUID == seg.FrameOfReferenceUID
        assert int(parametric_map.NumberOfFrames) == int(seg.NumberOfFrames)
        mapping = parametric_map.SharedFunctionalGroupsSequence[0].RealWorldValueMappingSequence[0]
        assert mapping.QuantityDefinitionSequence[0].ConceptCodeSequence[0].CodeValue == "130404"
        values = parametric_map.pixel_array.astype(np.float64) * float(mapping.RealWorldValueSlope)
        assert 0.0 <= values.min() and values.max() <= 1.0
        evidence = seg.pixel_array.astype(bool).reshape(values.shape)
        if evidence.any() and not evidence.all():
            assert values[evidence].mean() > values[~evidence].mean()
        assert dciodvfy_errors(maps[0]) == [], maps[0]
    (plain,), _, _ = explain_paths([lesion_ct], tmp_path / "plain", models[:1], DRAW_ALL)
    assert not [p for p in plain.outputs if p.name.startswith("PM-")]
