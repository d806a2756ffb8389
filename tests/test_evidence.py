"""Whether evidence is real: comprehensiveness, minimality, the random-mask null check, the deletion
term, the ranking baselines (Grad-CAM++, RISE) and the classifier zoo they are measured on."""

from __future__ import annotations

import pytest
import torch
from conftest import BlobDetector, IgnoresInput, LooksAtCorner, blob_image

from medcam_dicom.benchmark.metrics import (
    equal_evidence_mask,
    pointing_game,
    precision,
    removal,
    smallest_faithful_area,
)
from medcam_dicom.benchmark.names import DATASETS_2D, ZOO_DATASETS
from medcam_dicom.benchmark.run import ImageResult, minimality_ratio
from medcam_dicom.benchmark.training import ordinary_augmentation
from medcam_dicom.benchmark.zoo import (
    TUNING_ARCHS,
    TUNING_DATASETS,
    ZOO_ARCHS,
    ZooMember,
    zoo_checkpoint_path,
    zoo_members,
)
from medcam_dicom.explain.amortized import AmortizedMedCAM
from medcam_dicom.explain.comparison import GradCAMSaliency, RISESaliency, explain_at_area
from medcam_dicom.explain.config import MedCAMConfig
from medcam_dicom.explain.medcam import MedCAM
from medcam_dicom.explain.null_check import blob_size, random_keep_rate, random_smooth_masks
from medcam_dicom.explain.verification import masked_log_odds
from medcam_dicom.models.architectures import ARCHITECTURES, build_classifier
from medcam_dicom.models.demo import TrainedClassifier, demo_checkpoint_path


def corner_image() -> torch.Tensor:
    image = torch.zeros(1, 16, 16)
    image[:, :8, :8] = 1.0
    return image


def corner_rankings() -> tuple[torch.Tensor, torch.Tensor]:
    """Two rankings of ``corner_image``'s voxels: the bright corner first, and the corner last."""
    good = 0.5 * torch.rand(16, 16)
    good[:8, :8] = 1.0 + torch.rand(8, 8)
    bad = torch.rand(16, 16)
    bad[:8, :8] -= 2.0
    return good, bad


def test_precision_counts_the_share_of_the_mask_on_the_finding():
    mask = torch.zeros(4, 4, dtype=torch.bool)
    mask[0, :] = True
    truth = torch.zeros(4, 4, dtype=torch.bool)
    truth[0, :2] = True
    assert precision(mask, truth) == 0.5
    assert precision(torch.zeros(4, 4, dtype=torch.bool), truth) == 0.0


def test_removal_flips_the_decision_only_when_the_used_evidence_is_removed():
    classifier, image = LooksAtCorner(), corner_image()
    baseline = torch.zeros_like(image)
    corner = torch.zeros(16, 16, dtype=torch.bool)
    corner[:8, :8] = True
    probability, flips = removal(classifier, image, corner, 1, baseline)
    assert flips and probability < 0.01
    probability, flips = removal(classifier, image, ~corner, 1, baseline)
    assert not flips and probability > 0.99


def test_minimality_finds_the_smallest_faithful_top_k_area_of_a_ranking():
    classifier, image = LooksAtCorner(), corner_image()
    baseline = torch.zeros_like(image)
    good, bad = corner_rankings()
    # the corner's mean must exceed 0.5: a little over half of its 64 voxels (a quarter of the image)
    with torch.no_grad():
        full = float(torch.softmax(classifier(image.unsqueeze(0)), dim=1)[0, 1])
    smallest_good, preserving_good = smallest_faithful_area(classifier, image, good, 1, baseline, full)
    smallest_bad, preserving_bad = smallest_faithful_area(classifier, image, bad, 1, baseline, full)
    assert 0.125 <= smallest_good <= 0.16
    assert smallest_bad == 1.0 and preserving_bad == 1.0
    # keeping the full image's probability takes the whole corner (its mean is then the full image's)
    assert 0.25 <= preserving_good <= 0.3
    assert smallest_faithful_area(IgnoresInput(), image, good, 1, baseline, 0.0) == (None, None)  # class 1 never wins


def test_equal_evidence_finds_the_smallest_top_k_mask_as_convincing_as_another_mask():
    # LooksAtCorner's log-odds of class 1 are 20 x (share of the corner kept - 0.5): each corner voxel counts
    classifier, image = LooksAtCorner(), corner_image()
    baseline = torch.zeros_like(image)
    good, bad = corner_rankings()
    three_quarters = torch.zeros(16, 16, dtype=torch.bool)
    three_quarters[:6, :8] = True  # 48 of the corner's 64 voxels: log-odds 5
    _, odds = masked_log_odds(classifier, image, three_quarters.unsqueeze(0), 1, baseline)
    assert float(odds[0]) == pytest.approx(5.0, abs=1e-4)
    same = equal_evidence_mask(classifier, image, good, 1, baseline, float(odds[0]) - 1e-4)
    # 48 corner voxels, found to a few per cent (not to the 20 % steps of the levels)
    assert 48 <= int(same.sum()) <= 50 and bool(same[:8, :8].sum() >= 48)
    # the corner last: everything else comes first, so as much evidence costs 192 + 48 voxels
    later = equal_evidence_mask(classifier, image, bad, 1, baseline, float(odds[0]) - 1e-4)
    assert 240 <= int(later.sum()) <= 250 and int(later[:8, :8].sum()) >= 48
    # the full image's evidence takes the whole corner; more than the full image gives, no mask
    whole = equal_evidence_mask(classifier, image, good, 1, baseline, 10.0)
    assert int(whole[:8, :8].sum()) == 64 and int(whole.sum()) <= 70
    assert equal_evidence_mask(classifier, image, good, 1, baseline, 12.0) is None


def test_minimality_ratio_compares_with_the_best_ranking_on_each_image():
    def row(index: int, method: str, area: float, smallest: float | None = None, faithful: bool = True):
        return ImageResult("ct", index, 1, method, 1, 0.9, 0.9, faithful, area, 0.0, 0.0, 0.0, 0.0, 0,
                           iou=0.5, smallest_faithful_area=smallest,
                           smallest_preserving_area=None if smallest is None else 2 * smallest)

    results = [row(0, "medcam", 0.02), row(0, "gradcam", 0.02, 0.04), row(0, "rise", 0.02, 0.01),
               row(1, "medcam", 0.03), row(1, "gradcam", 0.03, 0.06), row(1, "rise", 0.03, None),
               row(2, "medcam", 0.5, faithful=False), row(2, "gradcam", 0.5, 0.1)]
    # image 0: 0.02 / 0.01 (rise is best); image 1: 0.03 / 0.06; image 2: not faithful, left out
    assert minimality_ratio(results, "medcam") == pytest.approx((2.0 + 0.5) / 2)
    assert minimality_ratio(results, "medcam", "probability") == pytest.approx((1.0 + 0.25) / 2)
    # a "normal" decision (no lesion: iou None) says nothing about minimality and is left out
    results.append(ImageResult("ct", 3, 0, "medcam", 0, 0.9, 0.9, True, 0.0, 0.0, 0.0, 0.0, 0.0, 0))
    results.append(ImageResult("ct", 3, 0, "rise", 0, 0.9, 0.9, True, 0.0, 0.0, 0.0, 0.0, 0.0, 0,
                               smallest_faithful_area=0.0025))
    assert minimality_ratio(results, "medcam") == pytest.approx((2.0 + 0.5) / 2)


def test_random_smooth_masks_have_the_requested_area_and_blob_size():
    generator = torch.Generator().manual_seed(0)
    masks = random_smooth_masks((64, 64), 200, 8, generator, blob=16.0)
    assert masks.shape == (8, 64, 64) and masks.dtype == torch.bool
    assert (masks.flatten(1).sum(1) == 200).all()
    assert not torch.equal(masks[0], masks[1])
    _, image_disk = blob_image(64, (20, 20), 8.0)
    assert blob_size(image_disk) == pytest.approx(float(image_disk.sum()) ** 0.5)


def test_null_check_tells_a_decision_any_region_keeps_from_one_only_the_evidence_keeps():
    image, disk = blob_image()
    baseline = torch.zeros_like(image)
    # the blob detector needs the blob: random regions of the blob's size almost never hold it
    assert random_keep_rate(BlobDetector(), image, disk, 1, baseline, count=32) <= 0.2
    # a classifier that ignores its input keeps "class 0" on any region: the check says so
    assert random_keep_rate(IgnoresInput(), image, disk, 0, baseline, count=32) == 1.0
    with pytest.raises(ValueError, match="at least one"):
        random_keep_rate(BlobDetector(), image, disk, 1, baseline, count=0)


@pytest.mark.parametrize("method", ["gradcam++", "rise"])
def test_gradcam_plus_plus_and_rise_point_at_the_blob(method):
    classifier = BlobDetector()
    image, disk = blob_image()
    if method == "gradcam++":
        ranker = GradCAMSaliency(classifier, plus_plus=True)
    else:
        ranker = RISESaliency(classifier, masks=400)
    area = float(disk.float().mean())
    explanation, saliency = explain_at_area(ranker, classifier, image, area, torch.zeros_like(image))
    assert explanation.method == method and saliency.shape == (32, 32)
    assert pointing_game(saliency, disk)
    assert explanation.faithful
    assert all(p.grad is None for p in classifier.parameters())


def test_rise_is_reproducible():
    classifier = BlobDetector()
    image, _ = blob_image()
    first = RISESaliency(classifier, masks=50).saliency(image, 1)
    assert torch.equal(first, RISESaliency(classifier, masks=50).saliency(image, 1))


def test_deletion_term_makes_the_mask_hold_all_of_the_evidence(fast_config):
    """Two blobs, either enough for the decision: the minimal mask keeps one, and removing it leaves the
    decision standing on the other; with the deletion term the optimised mask covers both, so removing it
    flips. (Pruning, which looks for the smallest part as convincing as the whole, may then keep less
    than both: it trades completeness for minimality; ``prune="none"`` keeps the optimised mask.)"""
    image, first = blob_image(32, (9, 9), 4.0)
    second_image, second = blob_image(32, (22, 22), 4.0)
    image = torch.maximum(image, second_image)
    classifier = BlobDetector()
    fast_config = MedCAMConfig.from_dict({**fast_config.to_dict(), "prune": "none"})
    plain_explainer = MedCAM(classifier, config=MedCAMConfig.from_dict({**fast_config.to_dict(),
                                                                        "weights": {"deletion": 0.0}}))
    plain = plain_explainer.explain(image)
    assert plain.faithful
    _, flips_plain = removal(classifier, image, plain.mask, 1, plain_explainer.baseline(image))
    config = MedCAMConfig.from_dict({**fast_config.to_dict(), "weights": {"deletion": 50.0}})
    explainer = MedCAM(classifier, config=config)
    complete = explainer.explain(image, record_history=True)
    assert "deletion" in complete.history[0]
    assert complete.faithful
    _, flips = removal(classifier, image, complete.mask, 1, explainer.baseline(image))
    assert not flips_plain and flips
    assert (complete.mask & first).any() and (complete.mask & second).any()


def test_decision_channels_spare_the_mask_reproducing_what_the_classifier_does_not_decide_on():
    classifier = BlobDetector(in_channels=2).eval()  # decides on channel 0's bright blob only
    image, _ = blob_image(32, (10, 20), 4.0)
    other = torch.zeros_like(image)
    other[0, 20:28, 4:12] = 1.0  # a bright square in channel 1: activations the decision does not read
    image = torch.cat([image, other])
    terms = {}
    for channels in ("all", "decision"):
        config = MedCAMConfig(max_steps=20, min_steps=10, unet_channels=(8, 16), unet_strides=(2,),
                              activation_channels=channels, warm_start_occlusion=(0.125, 0.0))
        explanation = MedCAM(classifier, config=config).explain(image, record_history=True)
        assert explanation.faithful
        terms[channels] = sum(row["act"] for row in explanation.history)
    # the warm-started mask (side-by-side occlusion windows) leaves the square out: every channel matched,
    # that costs; weighted by what the decision reads, it does not
    assert terms["decision"] < 0.1 * terms["all"], terms
    with pytest.raises(ValueError, match="per-image"):
        AmortizedMedCAM(classifier, config=MedCAMConfig(activation_channels="decision"))
    with pytest.raises(ValueError, match="activation_channels"):
        MedCAMConfig(activation_channels="some")


def test_zoo_split_tunes_on_two_architectures_and_two_datasets_plus_the_zoo_only_set_and_holds_out_the_rest():
    plain = zoo_members("plain")
    assert len(plain) == len(ZOO_DATASETS) * len(ZOO_ARCHS)
    tuning = zoo_members("plain", "tuning")
    assert {(m.arch, m.dataset) for m in tuning} == (
        {(a, d) for a in TUNING_ARCHS for d in TUNING_DATASETS} | {(a, "abdomen") for a in ZOO_ARCHS})
    # every architecture, DenseNet and transformer included, has tuning-side members
    assert {m.arch for m in tuning} == set(ZOO_ARCHS)
    held_out = zoo_members("all", "held-out")
    assert not {m.name for m in held_out} & {m.name for m in tuning}
    # the held-out classifiers are those reported before the zoo-only set was added: none of them moved
    assert {(m.arch, m.dataset) for m in held_out if m.training == "plain"} == (
        {(a, d) for a in ZOO_ARCHS for d in DATASETS_2D} - {(a, d) for a in TUNING_ARCHS for d in TUNING_DATASETS})
    assert len(held_out) == len(plain) - len(tuning) + 4  # the four masking-trained classifiers
    masking = zoo_members("masking")
    assert all(m.split == "held-out" for m in masking)
    assert zoo_checkpoint_path(masking[0]) == demo_checkpoint_path(masking[0].dataset, "resnet18-small")
    assert zoo_members("masking", datasets=("abdomen",)) == []  # no demo classifier there
    with pytest.raises(ValueError, match="2D datasets"):
        zoo_members("plain", datasets=("ct3d",))
    with pytest.raises(ValueError, match="classifiers"):
        zoo_members("ours")
    assert ZooMember("vit-convstem-small", "ct", "plain").split == "held-out"


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_every_architecture_returns_logits_and_survives_a_checkpoint(arch, tmp_path):
    network = build_classifier(arch, 2, 3, 2, (64, 64)).eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        out = network(x)
    logits = out[0] if isinstance(out, tuple) else out
    assert logits.shape == (2, 2)
    model = TrainedClassifier(network, arch, "fundus", 2, 3, (0.5,) * 3, (0.2,) * 3, ("normal", "lesion"), {},
                              spatial_shape=(64, 64))
    model.save(tmp_path / "model.pt")
    loaded = TrainedClassifier.load(tmp_path / "model.pt")
    assert loaded.spatial_shape == (64, 64)
    with torch.no_grad():
        again = loaded.network(x)
    again = again[0] if isinstance(again, tuple) else again
    assert torch.allclose(logits, again, atol=5e-2)


def test_ordinary_augmentation_flips_shifts_and_jitters_reproducibly():
    images = torch.rand(6, 1, 32, 32)
    first = ordinary_augmentation(images, torch.Generator().manual_seed(3))
    assert first.shape == images.shape
    assert torch.equal(first, ordinary_augmentation(images, torch.Generator().manual_seed(3)))
    assert not torch.allclose(first, images)
    # a shift moves content but keeps the value range up to the intensity jitter
    assert float(first.max()) <= 1.0 * 1.1 + 0.1 + 1e-6


def test_every_explanation_carries_the_null_check_and_says_when_it_is_not_specific(fast_config):
    image, _ = blob_image()
    specific = MedCAM(BlobDetector(), config=fast_config).explain(image)
    assert specific.faithful and specific.random_keep is not None and specific.random_keep < 0.25
    assert specific.specific is True and specific.summary()["specific"] is True
    # a classifier that ignores the image keeps its decision on every random region: not specific
    anything = MedCAM(IgnoresInput(), config=fast_config).explain(image)
    assert anything.faithful and anything.random_keep == 1.0 and anything.specific is False
    off = MedCAMConfig.from_dict({**fast_config.to_dict(), "null_masks": 0})
    skipped = MedCAM(IgnoresInput(), config=off).explain(image)
    assert skipped.random_keep is None and skipped.specific is None
    with pytest.raises(ValueError, match="null_limit"):
        MedCAMConfig(null_limit=0.0)


def test_the_secondary_capture_warns_a_reader_when_the_evidence_is_not_specific():
    from medcam_dicom.dicom.results import EvidenceMask
    from medcam_dicom.dicom.write_sc import evidence_lines
    from medcam_dicom.explain.explanation import Explanation

    def item(specific: bool | None, keep: float | None) -> EvidenceMask:
        explanation = Explanation(torch.ones(4, 4, dtype=torch.bool), torch.ones(4, 4), 1, 0.9, 0.95, True, 0.1, 5,
                                  1.0, random_keep=keep, specific=specific)
        return EvidenceMask(1, "lesion", (0,), torch.ones(1, 4, 4).numpy(), explanation)

    assert not any("CAUTION" in line for line in evidence_lines([item(True, 0.05)]))
    assert not any("CAUTION" in line for line in evidence_lines([item(None, None)]))
    warned = evidence_lines([item(False, 0.6)])
    assert any("CAUTION: 60% of random regions of this size also keep lesion" in line for line in warned)


@pytest.mark.parametrize("logit", [-200.0, -40.0, 0.0, 40.0, 200.0])
def test_a_saturated_mask_logit_still_has_a_gradient(logit):
    from medcam_dicom.explain.mask_network import GRADIENT_FLOOR, mask_probabilities

    z = torch.tensor([logit], requires_grad=True)
    p = mask_probabilities(z)
    assert 0.002 < float(p) < 0.998  # bounded: never fully 0 or 1
    (gradient,) = torch.autograd.grad(p.sum(), z)
    assert float(gradient) >= GRADIENT_FLOOR * float(p * (1 - p)) * 0.999 > 1e-4


def test_per_image_and_amortised_med_cam_optimise_one_loss_with_every_term(monkeypatch):
    """Both explainers build their loss with ``losses.medcam_loss``: the amortised one once lacked the
    margin term the per-image one had."""
    from medcam_dicom.explain import losses
    from medcam_dicom.explain.amortized import AmortizedMedCAM

    seen: list[tuple[int, set[str]]] = []
    real = losses.medcam_loss

    def recording(config, **kwargs):
        loss, terms = real(config, **kwargs)
        seen.append((kwargs["masked_logits"].shape[0], set(terms)))
        return loss, terms

    monkeypatch.setattr(losses, "medcam_loss", recording)
    weights = {"deletion": 1.0}
    config = MedCAMConfig(max_steps=3, min_steps=3, unet_channels=(4, 8), unet_strides=(2,), weights=weights)
    image, _ = blob_image()
    MedCAM(BlobDetector(), config=config).explain(image)
    per_image = [terms for batch, terms in seen if batch == 1]
    seen.clear()
    AmortizedMedCAM(BlobDetector(), config=config, width=8, coarseness=2).fit(
        torch.stack([image] * 4), epochs=1, batch_size=4, progress=False)
    amortised = [terms for batch, terms in seen if batch == 4]
    expected = {"act", "ce", "kl", "margin", "area", "bin", "tv", "rob", "deletion"}
    assert per_image and amortised
    assert per_image[0] == expected and amortised[0] == expected


def test_a_saturation_tolerance_lets_the_stopping_rule_fire_on_a_saturated_classifier():
    """The blob detector says "blob" with p = 1.0 to float precision: the evidence alone reaches 0.99997, so
    the strict rule (masked >= original) never fires and the run goes to max_steps; with a tolerance it
    stops once the mask has settled."""
    image, _ = blob_image()
    settings = dict(max_steps=120, min_steps=10, unet_channels=(8, 16), unet_strides=(2,),
                    weights={"margin": 0.0, "deletion": 0.0})
    strict = MedCAM(BlobDetector(), config=MedCAMConfig(**settings, preserve_tolerance=0.0)).explain(image)
    tolerant = MedCAM(BlobDetector(), config=MedCAMConfig(**settings, preserve_tolerance=0.2)).explain(image)
    assert strict.steps == 120
    assert tolerant.steps < 120 and tolerant.faithful
    assert tolerant.masked_probability >= tolerant.probability - 0.2
    with pytest.raises(ValueError, match="preserve_tolerance"):
        MedCAMConfig(preserve_tolerance=1.0)


def test_a_mask_that_stops_shrinking_ends_the_run_and_the_smallest_preserved_one_is_returned():
    """The stall rule: with the "still area" rule switched off (a window longer than the run), a run whose
    smallest faithful, preserved mask has stopped shrinking ends ``stall_window`` steps later and returns
    that smallest mask, not whatever the last step held; without it the run goes to ``max_steps``."""
    image, _ = blob_image()
    settings = dict(max_steps=150, min_steps=10, unet_channels=(8, 16), unet_strides=(2,), prune="none",
                    convergence_window=1000, preserve_tolerance=0.2, weights={"margin": 0.0, "deletion": 0.0})
    endless = MedCAM(BlobDetector(), config=MedCAMConfig(**settings, stall_window=None)).explain(image)
    assert endless.steps == 150
    stalled = MedCAM(BlobDetector(), config=MedCAMConfig(**settings, stall_window=15)).explain(
        image, record_history=True)
    assert 25 <= stalled.steps < 150 and stalled.faithful
    smallest = min(row["hard_area"] for row in stalled.history if row["faithful"] and row["step"] >= 10)
    assert stalled.area_fraction <= smallest + 1e-9
    with pytest.raises(ValueError, match="stall_window"):
        MedCAMConfig(stall_window=0)


def test_benchmark_set_overrides_any_setting_and_names_a_bad_one():
    import argparse

    from medcam_dicom.cli import _config

    config = _config(argparse.Namespace(max_steps=None, seed=None,
                                        set=["warm_start=none", "weights.deletion=7", "preserve_tolerance=0.002",
                                             "weights.area=300"]))
    assert config.warm_start == "none" and config.preserve_tolerance == 0.002
    assert config.weights.deletion == 7 and config.weights.area == 300  # several weights add up
    assert config.weights.act == MedCAMConfig().weights.act  # the other weights keep their defaults
    for bad in (["warm_start=sideways"], ["no_such_setting=1"], ["weights.nope=1"], ["missing-equals"]):
        with pytest.raises(SystemExit, match="warm_start|no_such_setting|nope|KEY=VALUE"):
            _config(argparse.Namespace(max_steps=None, seed=None, set=bad))
