"""The public contract of MedCAM: shapes, dtypes, a faithfulness flag that is really computed, 2D/3D,
CNN/ViT, determinism, and a classifier left exactly as it was."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import BlobDetector, IgnoresInput, LooksAtCorner, blob_image
from monai.networks.nets import ViT

from medcam_dicom import Explanation, MedCAM, MedCAMConfig
from medcam_dicom.benchmark.metrics import iou


def test_explanation_has_documented_shapes_and_types(fast_config):
    image, _ = blob_image()
    explanation = MedCAM(BlobDetector(), config=fast_config).explain(image)
    assert isinstance(explanation, Explanation)
    assert explanation.mask.dtype == torch.bool and explanation.mask.shape == (32, 32)
    assert explanation.soft_mask.dtype == torch.float32 and explanation.soft_mask.shape == (32, 32)
    assert 0.0 <= float(explanation.soft_mask.min()) and float(explanation.soft_mask.max()) <= 1.0
    assert isinstance(explanation.target, int) and explanation.target == 1
    assert 0.0 <= explanation.probability <= 1.0 and 0.0 <= explanation.masked_probability <= 1.0
    assert isinstance(explanation.faithful, bool)
    assert explanation.area_fraction == pytest.approx(float(explanation.mask.float().mean()))
    assert 0 < explanation.steps <= fast_config.max_steps and explanation.seconds > 0


def test_mask_finds_the_blob_that_decides_the_class(fast_config):
    image, disk = blob_image()
    explanation = MedCAM(BlobDetector(), config=fast_config).explain(image)
    assert explanation.faithful
    assert explanation.area_fraction < 0.5
    assert (explanation.mask & disk).any(), "the evidence must overlap the blob"
    assert iou(explanation.mask, disk) > 5 * float(disk.float().mean())


def test_coarse_mask_grid_gives_a_smooth_mask_that_still_finds_the_blob(fast_config):
    from dataclasses import replace

    from medcam_dicom.explain.mask_network import coarse_logits

    checker = (torch.arange(16)[:, None] + torch.arange(16)[None, :]) % 2 * 2.0 - 1.0
    assert torch.equal(coarse_logits(checker[None, None], 1)[0, 0], checker)
    assert coarse_logits(checker[None, None], 2).abs().max() < 1e-6  # voxel-scale detail averages away
    image, disk = blob_image()
    explanation = MedCAM(BlobDetector(), config=replace(fast_config, mask_grid=4)).explain(image)
    assert explanation.faithful and explanation.area_fraction < 0.5
    assert iou(explanation.mask, disk) > 5 * float(disk.float().mean())
    with pytest.raises(ValueError, match="mask_grid"):
        MedCAMConfig(mask_grid=0)


def test_faithful_flag_matches_an_independent_rerun_of_the_classifier(fast_config):
    """The flag and the masked probability agree with the classifier run by hand on image x mask (zero
    baseline), not with another call of the same verification code."""
    image, _ = blob_image()
    classifier = BlobDetector()
    config = MedCAMConfig(**{**fast_config.to_dict(), "baseline": "zero"})
    explanation = MedCAM(classifier, config=config).explain(image)
    with torch.no_grad():
        probabilities = torch.softmax(classifier((image * explanation.mask).unsqueeze(0)), dim=1)[0]
    assert explanation.faithful == (int(probabilities.argmax()) == explanation.target)
    assert explanation.masked_probability == pytest.approx(float(probabilities[explanation.target]), abs=1e-5)
    # and the blob detector's decision is known to rest on the blob: a mask without it is not faithful
    assert explanation.faithful and explanation.target == 1


def test_classifier_that_ignores_the_image_is_always_faithful(fast_config):
    image, _ = blob_image()
    explainer = MedCAM(IgnoresInput(), config=fast_config)
    explanation = explainer.explain(image)
    assert explanation.target == 0 and explanation.faithful
    assert explainer.verify(image, torch.zeros(32, 32, dtype=torch.bool), 0)[0]


def test_decision_outside_a_forced_mask_is_reported_unfaithful():
    image = torch.zeros(1, 32, 32)
    image[:, :16, :16] = 1.0  # bright top-left corner: LooksAtCorner says class 1
    explainer = MedCAM(LooksAtCorner(), config=MedCAMConfig(baseline="zero"))
    bottom_right = torch.zeros(32, 32, dtype=torch.bool)
    bottom_right[16:, 16:] = True
    faithful, probability = explainer.verify(image, bottom_right, target=1)
    assert not faithful and probability < 0.5
    top_left = torch.zeros(32, 32, dtype=torch.bool)
    top_left[:16, :16] = True
    assert explainer.verify(image, top_left, target=1)[0]


def test_explicit_target_is_explained_even_when_not_top1(fast_config):
    image, _ = blob_image()
    explanation = MedCAM(BlobDetector(), config=fast_config).explain(image, target=0)
    assert explanation.target == 0
    assert explanation.probability < 0.5


def test_three_dimensional_images_use_the_same_path(fast_config):
    image, sphere = blob_image(size=16, centre=(8, 5, 10), radius=3.0)
    explanation = MedCAM(BlobDetector(spatial_dims=3), config=fast_config).explain(image)
    assert explanation.mask.shape == (16, 16, 16) and explanation.soft_mask.shape == (16, 16, 16)
    assert explanation.target == 1 and explanation.faithful
    assert (explanation.mask & sphere).any()


def test_vision_transformer_token_layers_are_matched(fast_config):
    torch.manual_seed(0)
    vit = ViT(in_channels=1, img_size=32, patch_size=8, hidden_size=32, mlp_dim=64, num_layers=4,
              num_heads=4, classification=True, num_classes=3, spatial_dims=2)
    image, _ = blob_image()
    explainer = MedCAM(vit, config=fast_config)
    layers = explainer.matched_layers(image)
    assert layers and all(layer.kind == "token" for layer in layers)
    assert layers[-1].name.startswith("blocks.") or layers[-1].name == "norm"
    explanation = explainer.explain(image)
    assert explanation.mask.shape == (32, 32)
    evidence = image * explanation.mask + explainer.baseline(image) * ~explanation.mask
    with torch.no_grad():
        logits = vit(evidence.unsqueeze(0))[0]
    assert explanation.faithful == (int(logits.argmax()) == explanation.target)


def test_same_seed_gives_identical_masks(fast_config):
    image, _ = blob_image()
    first = MedCAM(BlobDetector(), config=fast_config).explain(image)
    second = MedCAM(BlobDetector(), config=fast_config).explain(image)
    assert torch.equal(first.mask, second.mask)
    assert torch.equal(first.soft_mask, second.soft_mask)
    assert first.steps == second.steps


def test_classifier_weights_mode_and_gradients_are_left_untouched(fast_config):
    classifier = BlobDetector()
    classifier.train()
    before = copy.deepcopy(classifier.state_dict())
    image, _ = blob_image()
    MedCAM(classifier, config=fast_config).explain(image)
    assert classifier.training and all(m.training for m in classifier.modules())
    assert all(p.grad is None for p in classifier.parameters())
    after = classifier.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not classifier._forward_hooks and not classifier.conv1._forward_hooks


def test_explain_batch_returns_one_explanation_per_image(fast_config):
    image, _ = blob_image()
    batch = torch.stack([image, torch.zeros_like(image)])
    explanations = MedCAM(BlobDetector(), config=fast_config).explain_batch(batch)
    assert [e.target for e in explanations] == [1, 0]


def test_loss_history_records_every_term_when_asked(fast_config):
    image, _ = blob_image()
    explanation = MedCAM(BlobDetector(), config=fast_config).explain(image, record_history=True)
    assert explanation.history
    assert {"act", "ce", "kl", "margin", "area", "bin", "tv", "rob", "loss", "hard_area", "faithful"} <= set(
        explanation.history[0]
    )


def test_zero_weight_terms_are_not_computed(fast_config):
    image, _ = blob_image()
    config = MedCAMConfig(**{**fast_config.to_dict(), "weights": {"act": 0, "rob": 0}})
    explanation = MedCAM(BlobDetector(), config=config).explain(image, record_history=True)
    assert "act" not in explanation.history[0] and "rob" not in explanation.history[0]


@pytest.mark.parametrize("baseline", ["zero", "mean", "blur", "noise"])
def test_every_baseline_produces_a_verified_mask(fast_config, baseline):
    image, disk = blob_image()
    config = MedCAMConfig(**{**fast_config.to_dict(), "baseline": baseline})
    classifier = BlobDetector()
    explainer = MedCAM(classifier, config=config)
    explanation = explainer.explain(image)
    # the blob decides: every baseline must end on a faithful mask that holds (part of) the blob
    assert explanation.faithful and explanation.target == 1
    assert (explanation.mask & disk).any() and explanation.area_fraction < 0.5
    evidence = image * explanation.mask + explainer.baseline(image) * ~explanation.mask
    with torch.no_grad():
        probability = float(torch.softmax(classifier(evidence.unsqueeze(0)), dim=1)[0, 1])
    assert explanation.masked_probability == pytest.approx(probability, abs=1e-5)
