"""scripts/benchmark_distillation.py: the decoder trained on searched masks learns them (a pilot's script, on
the zoo's tuning classifier ct/cnn, two images)."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import torch

from medcam_dicom.benchmark.training import EXPLAINER_SEED
from medcam_dicom.benchmark.zoo import ZooMember, load_zoo_classifier, zoo_explainer_path
from medcam_dicom.data.synthetic import generate
from medcam_dicom.explain.amortized import AmortizedMedCAM, evidence_iou

ROOT = Path(__file__).resolve().parents[1]


def _script():
    path = ROOT / "scripts" / "benchmark_distillation.py"
    spec = importlib.util.spec_from_file_location("benchmark_distillation", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_distillation_loss_is_lowest_on_the_target_mask():
    distillation = _script()
    mask = torch.zeros(2, 1, 8, 8)
    mask[:, :, 2:5, 2:5] = 1
    matching = distillation.distillation_loss(8 * (2 * mask - 1), mask, pos_weight=4.0)
    shifted = distillation.distillation_loss(8 * (2 * mask.roll(3, dims=3) - 1), mask, pos_weight=4.0)
    assert float(matching) < 0.05 < float(shifted)


def test_the_fitted_decoder_outputs_the_searched_masks(tmp_path, capsys):
    distillation = _script()
    member = ZooMember("cnn", "ct", "plain")
    targets = distillation.make_targets(member, 2, tmp_path)
    saved = torch.load(targets)
    assert saved["masks"].shape == (2, 128, 128) and saved["masks"][1].any()  # image 1 holds a lesion
    # a new decoder (coarseness 2), so that what it outputs can only come from the targets
    fitted = distillation.fit(member, tmp_path, epochs=60, learning_rate=5e-3, pos_weight=4.0, margin=0.0,
                              coarseness=2)
    assert fitted == tmp_path / "fit" / zoo_explainer_path(member).name
    classifier = load_zoo_classifier(member, progress=False)
    images = classifier.preprocess(generate("ct", 2, seed=EXPLAINER_SEED).images).float()
    shipped = AmortizedMedCAM.load(zoo_explainer_path(member), classifier.network)
    # the fit's starting point: a new decoder is built from the config's seed
    untrained = AmortizedMedCAM(classifier.network, layers=shipped.medcam.layer_names, config=shipped.config,
                                coarseness=2).build(images[0])
    distilled = AmortizedMedCAM.load(fitted, classifier.network)
    assert distilled.metadata["distilled"]["epochs"] == 60 and distilled.coarseness == 2
    target = saved["masks"][1:].float().unsqueeze(1)
    figures = {}
    for name, explainer in (("untrained", untrained), ("distilled", distilled)):
        predicted = explainer.predict(images[1:], [1])
        figures[name] = (float(distillation.distillation_loss(predicted["logits"].unsqueeze(1), target, 4.0)),
                         float(evidence_iou(predicted["mask"], saved["masks"][1:])))
    assert figures["distilled"][0] < 0.8 * figures["untrained"][0]
    assert figures["distilled"][1] > max(0.4, figures["untrained"][1] + 0.3)
    distillation.check(member, tmp_path / "fit", 2, [2.0, 0.0], reference=True)
    printed = capsys.readouterr().out
    assert "distilled: 1 lesion decisions" in printed and "searched: 1 lesion decisions" in printed


def test_the_script_names_missing_targets_and_explainers(tmp_path):
    script = str(ROOT / "scripts" / "benchmark_distillation.py")
    fit = subprocess.run([sys.executable, script, "fit", "--out", str(tmp_path)], capture_output=True, text=True)
    assert fit.returncode != 0 and "ct-cnn-targets.pt" in fit.stderr and "targets" in fit.stderr
    check = subprocess.run([sys.executable, script, "check", "--out", str(tmp_path)], capture_output=True, text=True)
    assert check.returncode == 2 and str(tmp_path / "fit" / "ct-cnn-explainer.pt") in check.stderr
