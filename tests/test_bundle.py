"""The MONAI bundle in monai_bundle/, run the way users run it: ``python -m monai.bundle ...`` in a
subprocess, on the bundled sample data, offline."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import pydicom
import pytest
import torch

from medcam_dicom import AmortizedMedCAM
from medcam_dicom.models.description import parse_description
from medcam_dicom.models.loading import load_model

BUNDLE = Path(__file__).resolve().parents[1] / "monai_bundle"
CONFIGS = BUNDLE / "configs"


def bundle(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """``python -m monai.bundle ARGS`` from the repository root; fails the test with its output."""
    done = subprocess.run([sys.executable, "-m", "monai.bundle", *args], cwd=BUNDLE.parent, capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, f"monai.bundle {args[0]} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def merged(*names: str) -> str:
    """A --config_file value merging configs (later files override earlier keys)."""
    return "[" + ",".join(f"'{CONFIGS / name}'" for name in names) + "]"


def test_metadata_verifies_offline_against_the_schema_in_the_bundle(tmp_path):
    bundle("verify_metadata", "--meta_file", str(CONFIGS / "metadata.json"), "--filepath", str(CONFIGS / "schema.json"))
    broken = json.loads((CONFIGS / "metadata.json").read_text())
    del broken["network_data_format"]["inputs"]["image"]["num_channels"]
    (tmp_path / "metadata.json").write_text(json.dumps(broken))
    done = subprocess.run([sys.executable, "-m", "monai.bundle", "verify_metadata", "--meta_file",
                           str(tmp_path / "metadata.json"), "--filepath", str(CONFIGS / "schema.json")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and "num_channels" in done.stdout + done.stderr


def test_inference_explains_the_sample_images_and_dicom(tmp_path):
    out = tmp_path / "out"
    bundle("run", "--config_file", str(CONFIGS / "inference.json"), "--output_dir", str(out))
    rows = json.loads((out / "report.json").read_text())
    images = [r for r in rows if r["kind"] == "image"]
    assert len(images) == 4 and all(r["status"] == "explained" for r in images)
    for row in images:
        assert row["faithful"] is True
        assert row["method"] in ("amortized", "amortized+refine")
        mask = nib.load(row["outputs"][0])
        source = nib.load(row["source"])
        assert mask.shape == source.shape and set(mask.get_fdata().ravel().tolist()) <= {0.0, 1.0}
        assert (mask.affine == source.affine).all()
        expected = "lesion" if "lesion" in Path(row["source"]).name else "normal"
        assert row["class_name"] == expected
    lesions = [r for r in images if r["class_name"] == "lesion"]
    assert all(0.0 < r["area_fraction"] < 0.5 for r in lesions)
    series = [r for r in rows if r["kind"] == "dicom"]
    assert len(series) == 1 and series[0]["status"] == "explained" and series[0]["faithful"]
    modalities = {pydicom.dcmread(p, stop_before_pixels=True).Modality for p in series[0]["outputs"]}
    assert modalities == {"SEG", "OT", "SR"}
    csv_lines = (out / "report.csv").read_text().strip().splitlines()
    assert csv_lines[0].startswith("source,kind,status,target") and len(csv_lines) == len(rows) + 1


def test_quick_demo_training_writes_a_classifier_bundle_that_inference_uses(tmp_path):
    # train_demo.json retrains the demo classifier and its explainer; with the bundle's configs beside the
    # models the result is a classifier bundle like any other (classifier_bundle + explainer_checkpoint)
    retrained = tmp_path / "bundle"
    shutil.copytree(CONFIGS, retrained / "configs")
    models = retrained / "models"
    bundle("run", "--config_file", merged("inference.json", "train_demo.json"), "--quick", "True",
           "--models_dir", str(models))
    assert {"model.pt", "explainer.pt", "training.json"} <= {p.name for p in models.iterdir()}
    summary = json.loads((models / "training.json").read_text())
    assert summary["explainer"] and "faithful_pct" in summary["explainer"][0]
    out = tmp_path / "out"
    sample = BUNDLE / "sample_data" / "ct-1-lesion.nii.gz"
    bundle("run", "--config_file", str(CONFIGS / "inference.json"), "--classifier_bundle", str(retrained),
           "--explainer_checkpoint", str(models / "explainer.pt"), "--input_dir", str(sample),
           "--output_dir", str(out), "--refine", "0")
    rows = json.loads((out / "report.json").read_text())
    assert len(rows) == 1 and rows[0]["status"] == "explained" and rows[0]["steps"] == 0


def test_ckpt_export_gives_torchscript_that_the_dicom_path_loads(tmp_path):
    exported = tmp_path / "classifier.ts"
    bundle("ckpt_export", "network_def", "--filepath", str(exported), "--ckpt_file",
           str(BUNDLE / "models" / "model.pt"), "--meta_file", str(CONFIGS / "metadata.json"),
           "--config_file", str(CONFIGS / "inference.json"))
    description = parse_description(
        {"name": "exported", "classifier": {"torchscript": str(exported)}, "class_names": ["normal", "lesion"],
         "input": {"size": [128, 128], "channels": 1, "intensity": {"window": [40, 400]}}},
    )
    loaded = load_model(description, "cpu")
    from_bundle = load_model(parse_description(
        {"name": "bundle", "classifier": {"bundle": str(BUNDLE)}, "class_names": ["normal", "lesion"],
         "input": {"size": [128, 128], "channels": 1, "intensity": {"window": [40, 400]}}}), "cpu")
    probe = torch.randn(2, 1, 128, 128)
    with torch.no_grad():
        assert torch.allclose(loaded.network(probe), from_bundle.network(probe), atol=1e-4)


def test_evaluation_prints_the_benchmark_rows(tmp_path):
    out = tmp_path / "evaluation"
    done = bundle("run", "--config_file", merged("inference.json", "evaluate.json"), "--output_dir", str(out),
                  "--images", "2", "--max_steps", "5")
    report = json.loads((out / "benchmark.json").read_text())
    methods = report["datasets"]["ct"]["methods"]
    assert {"medcam", "gradcam", "amortized", "amortized+refine"} <= set(methods)
    assert methods["amortized"]["images"] == 2
    assert "amortized+refine" in done.stdout


def test_bundle_explainer_is_the_shipped_demo_explainer_format():
    explainer = AmortizedMedCAM.load(BUNDLE / "models" / "explainer.pt",
                                     load_model(parse_description(
                                         {"name": "b", "classifier": {"bundle": str(BUNDLE)},
                                          "class_names": ["normal", "lesion"],
                                          "input": {"size": [128, 128], "channels": 1}})).network)
    assert explainer.spatial_dims == 2 and explainer.num_classes == 2


@pytest.mark.parametrize("name", ["LICENSE", "docs/README.md", "configs/metadata.json", "configs/schema.json"])
def test_bundle_has_the_files_the_specification_asks_for(name):
    assert (BUNDLE / name).is_file()
