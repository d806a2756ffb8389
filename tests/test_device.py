"""The explainers, baselines and the DICOM path on the device under test (``device`` fixture: the CPU here,
CUDA when ``scripts/device_check.py`` runs them on a GPU machine), plus that script's own CPU run.

What these catch on a GPU: a tensor made on the CPU meeting one on the GPU (a RuntimeError), a result left
on the GPU (callers expect CPU tensors), the classifier moved off its device, and masks that differ from
the CPU's beyond what float rounding explains."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from medcam_dicom import AmortizedMedCAM, MedCAM, MedCAMConfig
from medcam_dicom.benchmark.training import TEST_SEED
from medcam_dicom.data.synthetic import generate
from medcam_dicom.explain.comparison import GradCAMSaliency, OcclusionSaliency, RISESaliency, explain_at_area
from medcam_dicom.explain.verification import apply_mask, forward_logits
from medcam_dicom.models.demo import demo_explainer_path, load_demo_classifier
from tests.conftest import BlobDetector, blob_image

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.device


def _lesion_images(count: int = 2) -> torch.Tensor:
    """``count`` CT benchmark images of class "lesion", in [0, 1]."""
    test = generate("ct", 2 * count, seed=TEST_SEED)
    return test.images[test.labels == 1]


def _on(module: torch.nn.Module, device: torch.device) -> bool:
    return all(parameter.device.type == device.type for parameter in module.parameters())


def test_per_image_medcam_runs_on_the_device_and_returns_cpu_results(device):
    classifier = load_demo_classifier("ct", device)
    image = classifier.preprocess(_lesion_images(1)[0])
    # the default step cap: with 60, one run on an H200 ended without a preserved mask (full image), another
    # with one; the optimisation's float order differs between runs on a GPU
    explainer = MedCAM(classifier.network, device=device)
    explanation = explainer.explain(image, target=1)
    assert explanation.mask.device.type == "cpu" and explanation.mask.dtype == torch.bool
    assert explanation.mask.shape == (128, 128) and explanation.soft_mask.device.type == "cpu"
    assert explanation.faithful and 0.0 < explanation.area_fraction < 0.3
    assert _on(classifier.network, device)
    # the reported masked probability is what the classifier gives on the device for that mask
    on_device = image.to(device)
    baseline = explainer.baseline(on_device)
    with torch.no_grad():
        logits = forward_logits(classifier.network, apply_mask(on_device, explanation.mask.to(device), baseline)[None])
    assert float(torch.softmax(logits, dim=1)[0, 1]) == pytest.approx(explanation.masked_probability, abs=1e-3)


def test_shipped_amortised_explainer_gives_the_cpus_masks_on_the_device(device):
    images = _lesion_images(4)
    masks = {}
    for where in {torch.device("cpu"), device}:
        classifier = load_demo_classifier("ct", where)
        explainer = AmortizedMedCAM.load(demo_explainer_path("ct"), classifier.network, device=where)
        batch = classifier.preprocess(images)
        masks[where.type] = torch.stack([e.mask for e in explainer.explain_batch(batch, refine_steps=0)])
        assert masks[where.type].device.type == "cpu"
    cpu, other = masks["cpu"], masks[device.type]
    intersection = (cpu & other).flatten(1).sum(1).float()
    union = (cpu | other).flatten(1).sum(1).clamp(min=1).float()
    # bf16 autocast of the decoder on CUDA moves a few boundary pixels, not the mask
    assert float((intersection / union).min()) >= 0.9


def test_amortised_fit_and_refinement_on_the_device(device):
    classifier = BlobDetector(spatial_dims=3).to(device)
    volumes = torch.stack([blob_image(16, (c, 8, 8), 3.0)[0] for c in (5, 8, 11, 6)])
    config = MedCAMConfig(max_steps=5, min_steps=1, unet_channels=(4, 8), unet_strides=(2,))
    explainer = AmortizedMedCAM(classifier, config=config, width=8, coarseness=2)
    explainer.fit(volumes, epochs=1, batch_size=2, progress=False)
    assert explainer.device.type == device.type and _on(explainer.network, device)
    explanation = explainer.explain(volumes[0], refine_steps=3)
    assert explanation.mask.shape == (16, 16, 16) and explanation.mask.device.type == "cpu"
    assert _on(classifier, device)


@pytest.mark.parametrize("method", ["gradcam", "occlusion", "rise"])
def test_baselines_at_equal_area_on_the_device(device, method):
    classifier = load_demo_classifier("ct", device)
    network = classifier.network
    image = classifier.preprocess(_lesion_images(1)[0])
    saliency = {
        "gradcam": lambda: GradCAMSaliency(network),
        "occlusion": lambda: OcclusionSaliency(network),
        "rise": lambda: RISESaliency(network, masks=100),
    }[method]()
    baseline = MedCAM(network, device=device).baseline(image.to(device))
    explanation, heat = explain_at_area(saliency, network, image, 0.05, baseline, target=1)
    assert explanation.mask.device.type == "cpu" and heat.device.type == "cpu"
    assert explanation.area_fraction == pytest.approx(0.05, abs=0.01)


def test_a_ct_volume_series_through_the_dicom_path_on_the_device(device, tmp_path):
    import highdicom as hd

    from medcam_dicom.dicom.examples import write_ct_volume_series
    from medcam_dicom.dicom.pipeline import explain_paths
    from medcam_dicom.models.loading import load_model
    from tests.dicom_inputs import fast_description

    paths, finding = write_ct_volume_series(tmp_path / "in", slices=24, size=96)
    assert finding.any() and finding.shape == (24, 96, 96)
    model = load_model(fast_description("demo-ct3d", max_steps=30, min_steps=5), device)
    assert model.device.type == device.type
    results, skipped, failed = explain_paths(paths, tmp_path / "out", [model])
    assert not skipped and not failed and results[0].status == "explained", results[0].reason
    seg = hd.seg.segread(next(p for p in results[0].outputs if p.name.startswith("SEG")))
    assert seg.Rows == 96 and seg.Columns == 96
    assert len(seg.get_source_image_uids()) == 24
    assert 1 <= sum(p.name.startswith("SC") for p in results[0].outputs) <= 5  # key slices, not the stack


def test_device_check_script_runs_on_the_cpu(tmp_path):
    """The GPU check's CPU run (what CI can do): every stage completes and writes its figures."""
    out = tmp_path / "check"
    completed = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "device_check.py"), "--device", "cpu", "--quick", "--out", str(out)],
        capture_output=True, text=True, timeout=900, cwd=ROOT,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    figures = json.loads((out / "device_check.json").read_text())
    assert figures["device"] == "cpu"
    assert {stage: value["ok"] for stage, value in figures["stages"].items()} == {
        "speed": True, "demo": True, "series": True}
    series = figures["stages"]["series"]
    assert series["seg_frames"] >= 1 and series["stages_s"]["explain"] > 0 and series["peak_rss_gib"] > 0
    assert set(figures["stages"]["demo"]["classifiers"]) >= {"ct", "ct3d"}
