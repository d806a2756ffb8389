"""AmortizedMedCAM: training over a dataset, one-pass explanations, verification, refinement, persistence."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch.utils.data import DataLoader

from medcam_dicom import AmortizedMedCAM, MedCAM, MedCAMConfig
from medcam_dicom.benchmark.training import TEST_SEED
from medcam_dicom.data.synthetic import generate
from medcam_dicom.explain.losses import target_log_odds
from medcam_dicom.explain.verification import apply_mask, verify_mask
from medcam_dicom.models.demo import TrainedClassifier, demo_explainer_path, load_demo_classifier
from tests.conftest import BlobDetector, blob_image


def blob_dataset(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` 32x32 images with one bright disk at a random place (class 1), and the disks."""
    generator = torch.Generator().manual_seed(seed)
    images, disks = [], []
    for _ in range(count):
        centre = tuple(int(c) for c in torch.randint(7, 25, (2,), generator=generator))
        image, disk = blob_image(32, centre, 4.0)
        images.append(image)
        disks.append(disk)
    return torch.stack(images), torch.stack(disks)


@pytest.fixture(scope="module")
def trained_on_blobs() -> tuple[AmortizedMedCAM, torch.Tensor, torch.Tensor]:
    classifier = BlobDetector()
    # no log-odds margin: on this max-pooling toy detector the margin (masked log-odds >= full + 0.1) asks for
    # the blob's whole neighbourhood; measured here: area 0.18 and IoU 0.26 with it, 0.05 and 0.58 without
    config = MedCAMConfig(max_steps=40, min_steps=5, unet_channels=(8, 16), unet_strides=(2,), weights={"margin": 0.0})
    explainer = AmortizedMedCAM(classifier, config=config, width=16, coarseness=2)
    train, _ = blob_dataset(96, seed=0)
    val, val_disks = blob_dataset(16, seed=1)
    explainer.fit(train, epochs=6, batch_size=16, learning_rate=1e-2, val=(val, val_disks), progress=False)
    return explainer, val, val_disks


def test_fit_reports_validation_figures_per_epoch(trained_on_blobs):
    explainer, _, _ = trained_on_blobs
    assert [row["epoch"] for row in explainer.history] == list(range(1, 7))
    for row in explainer.history:
        assert {"loss", "train_faithful", "faithful_pct", "area_fraction", "iou", "seconds"} <= set(row)
    assert sum(bool(row.get("best")) for row in explainer.history) >= 1


def test_amortised_masks_find_the_blob_far_better_than_chance(trained_on_blobs):
    explainer, val, disks = trained_on_blobs
    figures = explainer.evaluate(val, disks)
    chance = float(disks.float().mean())  # the IoU a random mask of the disk's area would reach, roughly
    assert figures["faithful_pct"] >= 90.0
    assert figures["iou"] > max(0.3, 5 * chance), figures
    assert figures["area_fraction"] < 0.5


def test_explanation_contract_and_verification_by_a_rerun(trained_on_blobs):
    explainer, val, _ = trained_on_blobs
    explanation = explainer.explain(val[0])
    assert explanation.mask.dtype == torch.bool and explanation.mask.shape == (32, 32)
    assert explanation.soft_mask.dtype == torch.float32 and explanation.soft_mask.shape == (32, 32)
    assert explanation.method == "amortized" and explanation.steps == 0
    assert explanation.target == 1
    faithful, masked = verify_mask(explainer.classifier, val[0], explanation.mask, explanation.target,
                                   explainer.medcam.baseline(val[0]))
    assert explanation.faithful == faithful and explanation.masked_probability == pytest.approx(masked)
    assert explanation.area_fraction == pytest.approx(float(explanation.mask.float().mean()))


def test_unfaithful_masks_are_refined_from_the_warm_start(trained_on_blobs, tmp_path):
    explainer, val, disks = trained_on_blobs
    explainer.save(tmp_path / "explainer.pt")
    # a threshold no soft mask reaches: every amortised mask is empty, the blob is gone, the decision lost
    strict = MedCAMConfig(max_steps=40, min_steps=5, unet_channels=(8, 16), unet_strides=(2,), threshold=0.999)
    broken = AmortizedMedCAM.load(tmp_path / "explainer.pt", explainer.classifier, config=strict)
    plain = broken.explain(val[0])
    assert not plain.faithful and plain.area_fraction == 0.0 and plain.steps == 0
    level = broken.explain(val[0], refine_steps=1)  # the level search over the decoder's ranking only
    assert level.method == "amortized+refine" and level.faithful and level.steps == 1
    assert level.area_fraction <= 0.1 and (level.mask & disks[0]).any()
    polished = broken.explain(val[0], refine_steps="auto")
    assert polished.faithful and 1 <= polished.steps <= 1 + strict.min_steps
    assert polished.area_fraction <= level.area_fraction
    # the warm start is copied: refinement leaves the amortised network as it was
    assert torch.equal(broken.explain(val[0]).soft_mask, plain.soft_mask)


def test_pruning_cuts_faithful_masks_to_the_smallest_level_that_keeps_the_decision(trained_on_blobs):
    explainer, val, disks = trained_on_blobs
    shrunk = 0
    for image, disk in zip(val[:6], disks[:6]):
        whole = explainer.explain(image)
        pruned = explainer.explain(image, prune="decision")
        assert whole.faithful and pruned.faithful and pruned.method == whole.method
        assert not (pruned.mask & ~whole.mask).any()  # a level of the amortised mask, nothing added
        assert (pruned.mask & disk).any()
        # the figures are the pruned mask's, checked by a re-run, and so is the null check
        faithful, masked = verify_mask(explainer.classifier, image, pruned.mask, pruned.target,
                                       explainer.medcam.baseline(image))
        assert faithful and pruned.masked_probability == pytest.approx(masked)
        assert pruned.area_fraction == pytest.approx(float(pruned.mask.float().mean()))
        assert pruned.random_keep is not None
        assert torch.equal(pruned.soft_mask, whole.soft_mask)
        shrunk += pruned.area_fraction < whole.area_fraction
    # the max-pooling blob detector decides on a few bright pixels: the amortised masks hold more than that
    assert shrunk >= 4
    # "preserved" also asks for the full image's log-odds, so it keeps at least as much as "decision"
    image = val[0]
    assert (explainer.explain(image, prune="preserved").area_fraction
            >= explainer.explain(image, prune="decision").area_fraction)
    with pytest.raises(ValueError, match="prune must be one of"):
        explainer.explain(image, prune="smallest")


def test_sufficient_pruning_grows_a_mask_short_of_the_full_image_until_it_is_as_convincing(
    trained_on_blobs, tmp_path
):
    explainer, val, disks = trained_on_blobs
    explainer.save(tmp_path / "explainer.pt")
    # the level search's smallest faithful level (2 % of the image) keeps the decision on part of the
    # blob, at lower log-odds than the full image's: "sufficient" grows it along the decoder's ranking,
    # "preserved" only tries its own levels
    settings = dict(max_steps=40, min_steps=5, unet_channels=(8, 16), unet_strides=(2,), threshold=0.999)
    growing = AmortizedMedCAM.load(tmp_path / "explainer.pt", explainer.classifier,
                                   config=MedCAMConfig(**settings, prune_refine=0))
    # the config's prune_refine (default 8) reaches the pruning: levels between the growth's 20 % steps
    finer = AmortizedMedCAM.load(tmp_path / "explainer.pt", explainer.classifier,
                                 config=MedCAMConfig(**settings))
    shrunk = []
    for image, disk in zip(val[:4], disks[:4]):
        baseline = growing.medcam.baseline(image)
        full = _log_odds(explainer.classifier, image)
        short = growing.explain(image, refine_steps=1, prune="preserved")
        assert short.faithful and _log_odds(explainer.classifier, apply_mask(image, short.mask, baseline)) < full - 1
        grown = growing.explain(image, refine_steps=1, prune="sufficient")
        assert grown.faithful and grown.area_fraction > short.area_fraction
        assert _log_odds(explainer.classifier, apply_mask(image, grown.mask, baseline)) >= full - 1e-4
        assert grown.masked_probability >= grown.probability - 1e-6 and bool(grown.mask[short.mask].all())
        assert (grown.mask & disk).sum() >= 0.8 * disk.sum()
        refined = finer.explain(image, refine_steps=1, prune="sufficient")
        assert refined.faithful and not bool((refined.mask & ~grown.mask).any())
        assert _log_odds(explainer.classifier, apply_mask(image, refined.mask, baseline)) >= full - 1e-4
        shrunk.append(refined.area_fraction < grown.area_fraction)
    assert any(shrunk)


@pytest.mark.parametrize("ranking", ["gradient", "blend"])
def test_amortised_pruning_ranks_by_the_classifiers_gradient_when_the_config_asks(trained_on_blobs, tmp_path,
                                                                                   ranking):
    explainer, val, disks = trained_on_blobs
    explainer.save(tmp_path / "explainer.pt")
    settings = dict(max_steps=40, min_steps=5, unet_channels=(8, 16), unet_strides=(2,))
    by_gradient = AmortizedMedCAM.load(tmp_path / "explainer.pt", explainer.classifier,
                                       config=MedCAMConfig(**settings, prune_ranking=ranking))
    by_decoder = AmortizedMedCAM.load(tmp_path / "explainer.pt", explainer.classifier,
                                      config=MedCAMConfig(**settings, prune_ranking="soft"))
    differs = []
    for image, disk in zip(val[:4], disks[:4]):
        unpruned = explainer.explain(image)
        soft = by_decoder.explain(image, prune="decision")
        gradient = by_gradient.explain(image, prune="decision")
        assert gradient.faithful and not bool((gradient.mask & ~unpruned.mask).any())
        assert (gradient.mask & disk).sum() >= 0.5 * gradient.mask.sum()
        differs.append(not torch.equal(gradient.mask, soft.mask))
        if ranking == "blend":  # the default ranking of an amortised explainer
            assert torch.equal(explainer.explain(image, prune="decision").mask, gradient.mask)
    assert any(differs)  # the ranking reached the pruning


def test_amortised_completion_grows_a_one_blob_mask_over_the_second_blob_the_classifier_also_reads(
    trained_on_blobs, tmp_path
):
    explainer, _, _ = trained_on_blobs
    explainer.save(tmp_path / "explainer.pt")
    settings = dict(max_steps=40, min_steps=5, unet_channels=(8, 16), unet_strides=(2,), prune_search=40,
                    prune_search_guide=0.5)
    searching = AmortizedMedCAM.load(tmp_path / "explainer.pt", explainer.classifier,
                                     config=MedCAMConfig(**settings))
    completing = AmortizedMedCAM.load(tmp_path / "explainer.pt", explainer.classifier,
                                      config=MedCAMConfig(**settings, prune_complete=0.3))
    first_image, first = blob_image(32, (9, 9), 3.5)
    second_image, second = blob_image(32, (23, 23), 3.5)
    image = torch.maximum(first_image, second_image)  # either blob decides for the max-pooling detector
    baseline = searching.medcam.baseline(image)

    def removed(mask: torch.Tensor) -> float:
        with torch.no_grad():
            logits = explainer.classifier(apply_mask(image, ~mask, baseline).unsqueeze(0))
        return float(torch.softmax(logits, dim=1)[0, 1])

    searched = searching.explain(image, prune="preserved")
    completed = completing.explain(image, prune="preserved")
    assert removed(searched.mask) > 0.5  # the searched mask holds enough, not all, of the evidence
    assert removed(completed.mask) <= 0.3
    assert bool((completed.mask & first).any()) and bool((completed.mask & second).any())
    assert completed.faithful and completed.masked_probability >= completed.probability - 1e-6


def _log_odds(classifier: torch.nn.Module, image: torch.Tensor) -> float:
    with torch.no_grad():
        return float(target_log_odds(classifier(image.unsqueeze(0)), torch.tensor([1])))


def test_save_and_load_give_identical_masks(trained_on_blobs, tmp_path):
    explainer, val, _ = trained_on_blobs
    path = tmp_path / "explainer.pt"
    explainer.save(path)
    loaded = AmortizedMedCAM.load(path, explainer.classifier)
    for image in val[:4]:
        assert torch.equal(loaded.explain(image).mask, explainer.explain(image).mask)
    assert loaded.history == explainer.history
    assert loaded.coarseness == 2 and loaded.width == 16


def test_a_loaded_explainer_keeps_what_it_learned_with_and_prunes_with_todays_defaults(trained_on_blobs, tmp_path):
    explainer, val, _ = trained_on_blobs
    dated = dataclasses.replace(explainer.config, prune_ranking="soft", prune_refine=0, null_masks=4)
    old = AmortizedMedCAM(explainer.classifier, config=dated, width=16, coarseness=2).build(val[0])
    old.load_state_dict(explainer.state_dict())
    path = tmp_path / "explainer.pt"
    old.save(path)
    loaded = AmortizedMedCAM.load(path, explainer.classifier)
    today = MedCAMConfig()
    assert (loaded.config.prune_ranking, loaded.config.prune_refine, loaded.config.null_masks) == (
        today.prune_ranking, today.prune_refine, today.null_masks)
    # what the decoder was trained with stays the file's
    assert loaded.config.weights.margin == 0.0 and loaded.config.unet_channels == (8, 16)
    assert loaded.config.max_steps == 40
    assert loaded.medcam.config is loaded.config
    chosen = AmortizedMedCAM.load(path, explainer.classifier, config=dated)
    assert chosen.config == dated  # an explicit config is taken as it is


def test_state_dict_round_trip_into_a_built_explainer(trained_on_blobs):
    # what MONAI's CheckpointSaver / ignite's Checkpoint call: state_dict() to save, load_state_dict() to resume
    explainer, val, _ = trained_on_blobs
    fresh = AmortizedMedCAM(explainer.classifier, config=explainer.config, width=16, coarseness=2)
    with pytest.raises(ValueError, match="build"):
        fresh.load_state_dict(explainer.state_dict())
    fresh.build(val[0])
    assert not torch.equal(fresh.predict(val[:4])["mask"], explainer.predict(val[:4])["mask"])
    fresh.load_state_dict(explainer.state_dict())
    assert torch.equal(fresh.predict(val[:4])["mask"], explainer.predict(val[:4])["mask"])
    assert fresh.history == explainer.history


def test_verify_batch_reruns_the_classifier_on_each_masked_image(trained_on_blobs):
    explainer, val, _ = trained_on_blobs
    checked = explainer.verify_batch(val[:4])
    for index in range(4):
        faithful, masked_probability = verify_mask(explainer.classifier, val[index], checked["mask"][index],
                                                   int(checked["target"][index]), explainer.medcam.baseline(val[index]))
        assert bool(checked["faithful"][index]) == faithful
        assert float(checked["masked_probability"][index]) == pytest.approx(masked_probability, abs=1e-5)


def test_the_core_term_asks_a_level_of_the_mask_to_keep_the_decision_too(trained_on_blobs):
    from medcam_dicom.explain.amortized_training import core_masks, training_step

    generator = torch.Generator().manual_seed(0)
    soft = torch.rand(8, 1, 16, 16, requires_grad=True)
    core = core_masks(soft, 0.5, generator)
    hard = soft.detach() > 0.5
    # a core is a level of the explainer's ranking: inside the mask, smaller on average, straight-through
    assert not (core.detach().bool() & ~hard).any()
    assert core.detach().sum() < hard.sum()
    core.sum().backward()
    assert soft.grad is not None and soft.grad.abs().sum() > 0

    explainer, val, _ = trained_on_blobs
    layers = explainer.medcam.matched_layers(val[0])
    losses = [training_step(explainer, val[:4], layers, torch.Generator().manual_seed(1), weight)[0].item()
              for weight in (0.0, 5.0)]
    assert losses[1] > losses[0]  # the term (cross-entropy of the core-masked images, > 0) is added
    with pytest.raises(ValueError, match="core_weight"):
        explainer.fit(val[:4], epochs=1, core_weight=-1.0, progress=False)


def test_the_amortised_explainer_trains_without_the_activation_term_unless_told(trained_on_blobs):
    from medcam_dicom.explain.amortized_training import training_step

    # the amortised defaults: per-image Med-CAM's without the activation-matching term; single weights on top
    config = MedCAMConfig.amortized(seed=3, weights={"area": 50.0})
    assert (config.weights.act, config.weights.area, config.seed) == (0.0, 50.0, 3)
    assert config.weights.ce == MedCAMConfig().weights.ce
    assert MedCAMConfig.amortized(weights={"act": 10.0}).weights.act == 10.0  # the paper's loss, when asked
    assert MedCAMConfig().weights.act > 0  # per-image Med-CAM keeps the paper's term
    assert AmortizedMedCAM(BlobDetector()).config.weights.act == 0.0
    # the weight reaches the training loss: the same step costs more with the activation term
    explainer, val, _ = trained_on_blobs
    layers = explainer.medcam.matched_layers(val[0])
    fixture_act, losses = explainer.config.weights.act, []
    try:
        for act in (0.0, 10.0):
            explainer.config.weights.act = act
            step = training_step(explainer, val[:4], layers, torch.Generator().manual_seed(1), 0.0)
            losses.append(step[0].item())
    finally:
        explainer.config.weights.act = fixture_act
    assert losses[1] > losses[0]


def test_fit_accepts_a_dataloader_of_dicts():
    classifier = BlobDetector()
    images, _ = blob_dataset(8, seed=2)
    loader = DataLoader([{"image": image, "label": 1} for image in images], batch_size=4)
    explainer = AmortizedMedCAM(classifier, config=MedCAMConfig(unet_channels=(8, 16), unet_strides=(2,)),
                                width=8)
    history = explainer.fit(loader, epochs=1, progress=False)
    assert len(history) == 1 and history[0]["loss"] > 0
    assert explainer.explain(images[0]).mask.shape == (32, 32)


def test_bad_input_is_a_clear_error(trained_on_blobs, tmp_path):
    explainer, val, _ = trained_on_blobs
    with pytest.raises(ValueError, match="not trained"):
        AmortizedMedCAM(BlobDetector()).explain(val[0])
    with pytest.raises(ValueError, match="channel"):
        explainer.explain(torch.rand(3, 32, 32))
    with pytest.raises(ValueError, match="refine_steps"):
        explainer.explain(val[0], refine_steps=-1)
    with pytest.raises(ValueError, match="target"):
        explainer.explain(val[0], target=5)
    not_ours = tmp_path / "other.pt"
    torch.save({"weights": 1}, not_ours)
    with pytest.raises(ValueError, match="not a medcam-dicom amortised explainer"):
        AmortizedMedCAM.load(not_ours, BlobDetector())
    with pytest.raises(ValueError, match="does not exist"):
        AmortizedMedCAM.load(tmp_path / "missing.pt", BlobDetector())


def test_shipped_ct_explainer_keeps_decisions_and_localises_lesions():
    classifier = load_demo_classifier("ct")
    explainer = AmortizedMedCAM.load(demo_explainer_path("ct"), classifier.network)
    test = generate("ct", 12, seed=TEST_SEED)
    images = classifier.preprocess(test.images)
    figures = explainer.evaluate(images, test.lesions)
    assert figures["faithful_pct"] >= 75.0  # one forward pass; the ambiguous images are refined below
    assert figures["iou"] > 0.3, figures  # a random mask of the same area reaches ~0.03
    refined = explainer.explain_batch(images, refine_steps="auto")
    assert all(explanation.faithful for explanation in refined)
    assert sum(explanation.steps > 0 for explanation in refined) <= 4


def test_shipped_3d_explainer_pruned_to_the_decision_lies_on_the_lesion():
    from medcam_dicom.benchmark.metrics import iou, precision
    from medcam_dicom.models.demo import demo_plain_checkpoint_path
    from medcam_dicom.models.description import load_description

    classifier = load_demo_classifier("ct3d")
    assert classifier.metrics["masking"] == 0.5  # the demo one is fine-tuned with masking ...
    assert TrainedClassifier.load(demo_plain_checkpoint_path("ct3d")).metrics.get("masking", 0.0) == 0.0  # plain ships
    description = load_description("demo-ct3d")  # its config ranks the pruning by the decoder alone
    assert description.explainer.prune == "decision"
    explainer = AmortizedMedCAM.load(demo_explainer_path("ct3d"), classifier.network, config=description.medcam)
    test = generate("ct3d", 8, seed=TEST_SEED)
    images = classifier.preprocess(test.images)
    found = []
    assert test.lesions.shape[1:] == images.shape[2:]  # (N, D, H, W) against (N, 1, D, H, W)
    for image, lesion, label in zip(images, test.lesions.bool(), test.labels):
        explanation = explainer.explain(image, refine_steps="auto", prune="decision")
        assert explanation.faithful
        if int(label) == 1 and explanation.target == 1:
            found.append((precision(explanation.mask, lesion), iou(explanation.mask, lesion)))
    assert len(found) >= 3
    # measured on these volumes: precision 0.85-1.0, IoU 0.3-0.6 (a lesion is ~1.5 % of the volume)
    assert min(p for p, _ in found) > 0.5 and sum(i for _, i in found) / len(found) > 0.35, found


def test_dicom_path_uses_the_amortised_explainer_of_a_description(tmp_path):
    from medcam_dicom.dicom.examples import write_lesion_examples
    from medcam_dicom.dicom.pipeline import explain_paths
    from medcam_dicom.models.description import load_description
    from medcam_dicom.models.loading import RefiningExplainer, load_model

    description = load_description("demo-ct")
    assert description.explainer.kind == "amortized" and description.explainer.refine == "auto"
    model = load_model(description, "cpu")
    assert isinstance(model.explainer(), RefiningExplainer)
    inputs = [p for p in write_lesion_examples(tmp_path / "in") if "ct" in p.name]
    results, _, failed = explain_paths(inputs, tmp_path / "out", [model])
    assert not failed and results[0].status == "explained"
    evidence = results[0].evidence[0]
    assert evidence.class_name == "lesion" and evidence.explanation.faithful
    assert evidence.explanation.method in ("amortized", "amortized+refine")
    assert evidence.summary()["method"] == evidence.explanation.method
    assert 0.0 < evidence.area_fraction < 0.2
    # prune: sufficient in a description reaches the explainer (what it does: the tests above)
    sufficient = dataclasses.replace(description, explainer=dataclasses.replace(description.explainer,
                                                                                prune="sufficient"))
    assert model.explainer().prune == "preserved"
    assert load_model(sufficient, "cpu").explainer().prune == "sufficient"
    results, _, failed = explain_paths(inputs, tmp_path / "out-sufficient", [load_model(sufficient, "cpu")])
    assert not failed and results[0].status == "explained"
    explanation = results[0].evidence[0].explanation
    assert explanation.faithful and explanation.masked_probability >= explanation.probability - 1e-6


def test_description_explainer_errors_name_the_problem(tmp_path):
    from medcam_dicom.models.description import ModelDescriptionError, parse_description
    from medcam_dicom.models.loading import load_model

    base = {"name": "m", "classifier": {"demo": "ct"}, "input": {"size": [128, 128]}}
    with pytest.raises(ModelDescriptionError, match="refine"):
        parse_description({**base, "explainer": {"amortized": "demo", "refine": -3}})
    with pytest.raises(ModelDescriptionError, match="exactly one"):
        parse_description({**base, "explainer": {"refine": 5}})
    with pytest.raises(ModelDescriptionError, match="needs a demo classifier"):
        parse_description({**base, "classifier": {"torchscript": "x.ts"}, "explainer": {"amortized": "demo"}})
    missing = parse_description({**base, "explainer": {"amortized": str(tmp_path / "nope.pt")}})
    with pytest.raises(ModelDescriptionError, match="nope.pt does not exist"):
        load_model(missing, "cpu")
    with pytest.raises(ModelDescriptionError, match="'explainer.prune' must be one of"):
        parse_description({**base, "explainer": {"amortized": "demo", "prune": "yes"}})
    with pytest.raises(ModelDescriptionError, match="prunes by 'medcam"):
        parse_description({**base, "explainer": {"per_image": True, "prune": "decision"}})
    pruning = parse_description({**base, "explainer": {"amortized": "demo", "prune": "decision"}})
    assert pruning.explainer.prune == "decision" and pruning.fingerprint() != parse_description(
        {**base, "explainer": {"amortized": "demo"}}).fingerprint()
    sufficient = parse_description({**base, "explainer": {"amortized": "demo", "prune": "sufficient"}})
    assert sufficient.explainer.prune == "sufficient" and sufficient.fingerprint() != pruning.fingerprint()
    per_image = parse_description({**base, "explainer": {"per_image": True}})
    assert per_image.explainer.kind == "per_image" and per_image.fingerprint() != parse_description(
        {**base, "explainer": {"amortized": "demo"}}).fingerprint()


def test_three_dimensional_volumes_use_the_same_path():
    classifier = BlobDetector(spatial_dims=3)
    volumes = torch.stack([blob_image(16, (c, 8, 8), 3.0)[0] for c in (5, 8, 11, 6)])
    explainer = AmortizedMedCAM(classifier, config=MedCAMConfig(max_steps=5, min_steps=1, unet_channels=(4, 8),
                                                                unet_strides=(2,)), width=8, coarseness=2)
    explainer.fit(volumes, epochs=1, batch_size=2, progress=False)
    explanation = explainer.explain(volumes[0], refine_steps=3)
    assert explanation.mask.shape == (16, 16, 16) and explanation.soft_mask.shape == (16, 16, 16)
    assert explainer.spatial_dims == 3 and explanation.steps <= 3


def test_blur_baseline_of_volumes_approximates_the_exact_gaussian():
    from monai.transforms import GaussianSmooth

    from medcam_dicom.explain.baselines import strong_blur

    volume = torch.rand(1, 48, 48, 48, generator=torch.Generator().manual_seed(0))
    volume[:, 10:20, 10:30, 5:40] += 2.0
    exact = torch.as_tensor(GaussianSmooth(sigma=12.0)(volume))
    fast = strong_blur(volume, 12.0)
    assert fast.shape == volume.shape
    assert float((fast - exact).abs().max()) < 0.05 * float(volume.max() - volume.min())
    image = torch.rand(3, 64, 64)
    assert torch.equal(strong_blur(image, 8.0), torch.as_tensor(GaussianSmooth(sigma=8.0)(image)))


def test_baselines_saliencies_and_checked_images_are_plain_tensors_not_monai_metatensors():
    """A ``MetaTensor`` baseline or warm-start map made every later classifier pass track metadata through
    every operation (a third of an amortised explanation's time on a DenseNet)."""
    from monai.data import MetaTensor

    from medcam_dicom.explain.baselines import make_baseline, robustness_backgrounds, strong_blur
    from medcam_dicom.explain.batches import as_batch, images_of
    from medcam_dicom.explain.comparison import GradCAMSaliency, OcclusionSaliency
    from medcam_dicom.explain.pruning import gradient_scores
    from medcam_dicom.explain.validation import as_image_tensor

    generator = torch.Generator().manual_seed(0)
    image, volume = blob_image(32, (16, 16), 3.0)[0], torch.rand(1, 24, 24, 24)
    classifier = BlobDetector().eval()
    made = [make_baseline(image, kind, generator) for kind in ("zero", "mean", "blur", "noise")]
    made += [strong_blur(volume, 12.0), robustness_backgrounds(image, ("zero", "blur", "uniform"), generator)]
    made.append(MedCAM(classifier).baseline(image))
    made.append(gradient_scores(classifier, image, made[2], torch.ones(32, 32, dtype=torch.bool), 1))
    made.append(OcclusionSaliency(classifier, mask_size=8).saliency(image, 1))
    made.append(GradCAMSaliency(classifier).saliency(image, 1))
    made.append(as_image_tensor(MetaTensor(image)))
    made += [as_batch(MetaTensor(image.unsqueeze(0))), images_of({"image": MetaTensor(image.unsqueeze(0))})]
    assert [type(tensor) for tensor in made] == [torch.Tensor] * len(made)
    assert all(tensor.dtype == torch.float32 for tensor in made)


def test_evaluation_mode_switches_only_training_modules_off_and_restores_each_flag():
    from medcam_dicom.explain.verification import evaluation_mode

    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2), torch.nn.Dropout())
    model[1].eval()
    with evaluation_mode(model):
        assert not any(module.training for module in model.modules())
    assert [module.training for module in model.modules()] == [True, True, False, True]
    with pytest.raises(RuntimeError), evaluation_mode(model):
        raise RuntimeError("a failing forward")
    assert [module.training for module in model.modules()] == [True, True, False, True]
    model.eval()
    with evaluation_mode(model):
        model.train()  # as MONAI's eval_mode does on exit to the wrapper OcclusionSensitivity is given
    assert not any(module.training for module in model.modules())


def test_occlusion_leaves_a_classifier_in_eval_mode_in_eval_mode():
    from medcam_dicom.explain.comparison import OcclusionSaliency
    from medcam_dicom.explain.verification import evaluation_mode

    classifier = BlobDetector().eval()
    image, _ = blob_image(32, (16, 16), 3.0)
    OcclusionSaliency(classifier, mask_size=8).saliency(image, 1)
    assert not any(module.training for module in classifier.modules())
    with evaluation_mode(classifier):
        OcclusionSaliency(classifier, mask_size=8).saliency(image, 1)
        assert not any(module.training for module in classifier.modules())


def test_the_decoder_of_a_transformer_reads_the_stem_its_tokens_are_made_of():
    from monai.networks.nets import ViT

    from medcam_dicom.models.architectures import build_classifier

    torch.manual_seed(0)
    images, _ = blob_dataset(8, seed=3)
    config = MedCAMConfig(unet_channels=(8, 16), unet_strides=(2,))
    vit = ViT(in_channels=1, img_size=32, patch_size=8, hidden_size=32, mlp_dim=64, num_layers=2, num_heads=4,
              classification=True, num_classes=2, spatial_dims=2, post_activation="")
    hybrid = build_classifier("vit-convstem-small", 2, 1, 2, (32, 32))
    for classifier, expected in ((vit, ["patch_embedding.patch_embeddings"]),
                                 (hybrid, [f"patch_embedding.patch_embeddings.{i}" for i in range(3)]
                                  + ["patch_embedding.patch_embeddings"])):
        explainer = AmortizedMedCAM(classifier, config=config, width=8)
        explainer.build(images[0])
        # Med-CAM matches the transformer blocks; the decoder reads the feature maps the tokens are made of
        assert all(layer.kind == "token" for layer in explainer.medcam.matched_layers(images[0]))
        assert explainer.feature_layers == expected
        predicted = explainer.predict(images[:2])
        changed = [feature + torch.randn_like(feature) for feature in predicted["features"]]
        assert not torch.allclose(explainer._mask_logits(images[:2], changed),
                                  explainer._mask_logits(images[:2], predicted["features"]))
    history = explainer.fit(images, epochs=1, batch_size=4, progress=False)
    assert len(history) == 1 and explainer.explain(images[0]).mask.shape == (32, 32)
