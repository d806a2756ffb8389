"""Ground-truth data, metrics, comparison methods, the demo checkpoints and the benchmark command."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import BlobDetector, LooksAtCorner, blob_image

from medcam_dicom.benchmark.metrics import deletion_insertion_auc, iou, necessity, pointing_game
from medcam_dicom.benchmark.names import DATASETS, DEFAULT_METHODS
from medcam_dicom.benchmark.training import train_classifier
from medcam_dicom.cli import main
from medcam_dicom.data.names import GENERATED_DATASETS
from medcam_dicom.data.synthetic import SPECS, generate
from medcam_dicom.explain.comparison import GradCAMSaliency, OcclusionSaliency, explain_at_area, mask_at_area
from medcam_dicom.models.demo import TrainedClassifier, load_demo_classifier


@pytest.mark.parametrize("name", GENERATED_DATASETS)
def test_generated_data_has_lesions_only_in_class_one_and_is_reproducible(name):
    first, second = generate(name, 4, seed=7), generate(name, 4, seed=7)
    spec = SPECS[name]
    assert first.images.shape == (4, spec.channels, *spec.spatial_shape)
    assert torch.equal(first.images, second.images)
    assert first.labels.tolist() == [0, 1, 0, 1]
    assert not first.lesions[0].any() and not first.lesions[2].any()
    assert first.lesions[1].any() and first.lesions[3].any()
    assert 0.0 <= float(first.images.min()) and float(first.images.max()) <= 1.0
    assert not torch.equal(first.images, generate(name, 4, seed=8).images)


def test_a_dataset_added_for_the_zoo_leaves_the_others_images_unchanged():
    # each dataset's images are seeded by its place in GENERATED_DATASETS: the demo datasets keep theirs
    assert GENERATED_DATASETS[: len(DATASETS)] == DATASETS


def test_iou_and_pointing_game():
    a = torch.zeros(4, 4, dtype=torch.bool)
    a[:2] = True
    b = torch.zeros(4, 4, dtype=torch.bool)
    b[1:3] = True
    assert iou(a, b) == pytest.approx(4 / 12)
    assert iou(a, a) == 1.0
    saliency = torch.zeros(4, 4)
    saliency[3, 3] = 1.0
    assert not pointing_game(saliency, a)
    plateau = torch.zeros(4, 4)
    plateau[0:2, 0:3] = 1.0  # centre of mass of the plateau is (0.5, 1) -> inside a
    assert pointing_game(plateau, a)


def test_deletion_insertion_and_necessity_reward_the_evidence_the_classifier_uses():
    classifier = LooksAtCorner()
    image = torch.zeros(1, 16, 16)
    image[:, :8, :8] = 1.0
    baseline = torch.zeros_like(image)
    good = torch.zeros(16, 16)
    good[:8, :8] = 1.0
    bad = torch.zeros(16, 16)
    bad[8:, 8:] = 1.0
    good_deletion, good_insertion = deletion_insertion_auc(classifier, image, good, 1, baseline)
    bad_deletion, bad_insertion = deletion_insertion_auc(classifier, image, bad, 1, baseline)
    assert good_deletion < bad_deletion and good_insertion > bad_insertion
    assert necessity(classifier, image, good.bool(), 1, baseline) > 0.9
    assert necessity(classifier, image, bad.bool(), 1, baseline) == pytest.approx(0.0, abs=1e-6)


def test_mask_at_area_keeps_exactly_the_requested_number_of_top_voxels():
    saliency = torch.arange(100, dtype=torch.float32).view(10, 10)
    mask = mask_at_area(saliency, 0.07)
    assert int(mask.sum()) == 7 and mask.flatten()[-7:].all()
    with pytest.raises(ValueError, match="area_fraction"):
        mask_at_area(saliency, 1.5)


@pytest.mark.parametrize("method", [GradCAMSaliency, OcclusionSaliency])
def test_comparison_methods_point_at_the_blob_and_are_verified(method):
    classifier = BlobDetector()
    image, disk = blob_image()
    saliency_method = method(classifier) if method is GradCAMSaliency else method(classifier, mask_size=8)
    explanation, saliency = explain_at_area(saliency_method, classifier, image, float(disk.float().mean()),
                                            torch.zeros_like(image))
    assert saliency.shape == (32, 32)
    assert pointing_game(saliency, disk)
    assert explanation.method == saliency_method.name and explanation.target == 1
    assert explanation.area_fraction == pytest.approx(float(disk.float().mean()), abs=2e-3)
    assert all(p.grad is None for p in classifier.parameters())
    assert all(not m._forward_hooks and not m._backward_hooks for m in classifier.modules())


@pytest.mark.parametrize("name", DATASETS)
def test_shipped_demo_classifiers_recognise_the_lesion(name):
    model = load_demo_classifier(name)
    assert model.metrics["validation_accuracy"] >= 0.95
    test = generate(name, 8, seed=3)
    with torch.no_grad():
        predicted = model.network(model.preprocess(test.images)).argmax(1)
    assert (predicted == test.labels).float().mean() >= 0.75


def test_checkpoint_round_trip_and_bad_checkpoint(tmp_path):
    model = train_classifier("mr", train_images=16, validation_images=8, epochs=1, progress=False)
    path = tmp_path / "mr.pt"
    model.save(path)
    loaded = TrainedClassifier.load(path)
    x = model.preprocess(generate("mr", 2, seed=5).images)
    with torch.no_grad():
        assert torch.allclose(model.network.eval()(x), loaded.network(x), atol=5e-2)
    assert loaded.mean == model.mean and loaded.class_names == model.class_names
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="bad.pt"):
        TrainedClassifier.load(tmp_path / "bad.pt")


def test_benchmark_command_writes_table_json_and_gallery(tmp_path, capsys):
    out = tmp_path / "bench"
    code = main(["benchmark", "--datasets", "mr", "--images", "2", "--max-steps", "15", "--out", str(out)])
    assert code == 0
    report = json.loads((out / "benchmark.json").read_text())
    rows = report["datasets"]["mr"]["methods"]
    assert set(rows) == set(DEFAULT_METHODS) == {"medcam", "gradcam", "gradcam++", "occlusion", "rise"}
    for row in rows.values():
        assert row["images"] == 2
        for key in ("removed_probability", "removal_flips_pct", "random_keep_pct", "precision"):
            assert key in row
    per_image = [r for r in report["images"] if r["method"] == "gradcam"]
    assert all(0.0 < r["smallest_faithful_area"] <= 1.0 for r in per_image if r["smallest_faithful_area"])
    assert "minimality_ratio" in rows["medcam"] and "smallest_faithful_area" in rows["rise"]
    assert "quantus_pointing_pct" in report["datasets"]["mr"]["quantus"]["gradcam"]
    assert (out / "gallery.png").stat().st_size > 1000
    assert "Med-CAM ground-truth benchmark" in capsys.readouterr().out


def test_benchmark_on_the_plain_zoo_reports_the_tuning_split(tmp_path, capsys):
    out = tmp_path / "zoo"
    code = main(["benchmark", "--classifiers", "plain", "--split", "tuning", "--datasets", "ct", "--images", "2",
                 "--max-steps", "10", "--methods", "medcam", "gradcam", "--no-quantus", "--out", str(out)])
    assert code == 0
    report = json.loads((out / "benchmark.json").read_text())
    assert set(report["datasets"]) == {"ct/cnn/plain", "ct/resnet18-small/plain"}
    assert all(e["training"] == "plain" and e["split"] == "tuning" for e in report["datasets"].values())
    split = report["splits"]["plain / tuning"]
    assert sorted(split["classifiers"]) == ["ct/cnn/plain", "ct/resnet18-small/plain"]
    assert split["methods"]["medcam"]["images"] == 4
    assert "plain / tuning" in capsys.readouterr().out
    # --zoo-archs restricts the zoo to some architectures (e.g. while the others are being trained)
    assert main(["benchmark", "--classifiers", "plain", "--split", "tuning", "--datasets", "ct", "--images", "1",
                 "--max-steps", "5", "--methods", "medcam", "--no-quantus", "--zoo-archs", "cnn",
                 "--out", str(tmp_path / "cnn")]) == 0
    report = json.loads((tmp_path / "cnn" / "benchmark.json").read_text())
    assert set(report["datasets"]) == {"ct/cnn/plain"} and report["zoo_archs"] == ["cnn"]


def test_zoo_classifiers_get_their_own_amortised_explainer_compared_at_its_area(tmp_path):
    from medcam_dicom.benchmark.zoo import ZooMember, zoo_explainer_path

    member = ZooMember("cnn", "ct", "plain")
    assert zoo_explainer_path(member).is_file()  # trained once by scripts/train_zoo.py --explainers, shipped
    out = tmp_path / "amortised"
    assert main(["benchmark", "--classifiers", "plain", "--split", "tuning", "--datasets", "ct", "--zoo-archs", "cnn",
                 "--images", "2", "--methods", "amortized+refine", "rise", "lesion",
                 "--baseline-area", "amortized+refine", "--amortized-prune", "decision", "--no-quantus",
                 "--out", str(out)]) == 0
    report = json.loads((out / "benchmark.json").read_text())
    assert report["baseline_area"] == "amortized+refine" and report["amortized_prune"] == "decision"
    rows = report["images"]
    for index in {r["index"] for r in rows}:
        by_method = {r["method"]: r for r in rows if r["index"] == index}
        # RISE is cut to the amortised explainer's area, not to per-image Med-CAM's
        assert by_method["rise"]["area_fraction"] == pytest.approx(by_method["amortized+refine"]["area_fraction"],
                                                                   abs=2e-3)
        assert by_method["rise"]["target"] == by_method["amortized+refine"]["target"]
    # per-image Med-CAM is not needed when the amortised explainer sets the area; the finding itself as a mask
    # is measured on the lesion decision only (image 1), where RISE is also measured at equal evidence
    assert {r["method"] for r in rows} == {"amortized+refine", "rise", "lesion"}
    lesion = [r for r in rows if r["method"] == "lesion"]
    assert [r["index"] for r in lesion] == [1] and lesion[0]["precision"] == 1.0 and lesion[0]["iou"] == 1.0
    rise = {r["index"]: r for r in rows if r["method"] == "rise"}
    assert rise[0]["equal_evidence_area"] is None and rise[0]["equal_evidence_precision"] is None
    assert 0.0 < rise[1]["equal_evidence_area"] <= 1.0 and 0.0 <= rise[1]["equal_evidence_precision"] <= 1.0
    summary = report["datasets"]["ct/cnn/plain"]["methods"]
    assert summary["rise"]["precision_equal_evidence"] == rise[1]["equal_evidence_precision"]
    assert not report["datasets"]["ct/cnn/plain"]["skipped"]


def test_zoo_explainers_of_another_recipe_are_read_from_their_folder(tmp_path, capsys):
    from medcam_dicom.benchmark.zoo import ZooMember, load_zoo_classifier, zoo_explainer_path
    from medcam_dicom.explain.amortized import AmortizedMedCAM

    member = ZooMember("cnn", "ct", "plain")
    classifier = load_zoo_classifier(member, progress=False)
    # another "recipe": the shipped explainer with its last layer's bias raised, so that it keeps everything
    other = AmortizedMedCAM.load(zoo_explainer_path(member), classifier.network)
    with torch.no_grad():
        other.network.head[-1].conv.bias.fill_(50.0)
    recipe = tmp_path / "recipe"
    recipe.mkdir()
    other.save(recipe / zoo_explainer_path(member).name)
    arguments = ["benchmark", "--classifiers", "plain", "--split", "tuning", "--datasets", "ct", "--zoo-archs", "cnn",
                 "--images", "1", "--methods", "amortized", "--baseline-area", "amortized", "--no-quantus"]
    assert main([*arguments, "--zoo-explainers", str(recipe), "--out", str(tmp_path / "run")]) == 0
    report = json.loads((tmp_path / "run" / "benchmark.json").read_text())
    assert report["zoo_explainers"] == str(recipe)
    assert [r["area_fraction"] for r in report["images"]] == [1.0]  # the folder's explainer, not zoo/'s
    # a folder without the member's explainer is an error naming the file, not a silent retraining
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main([*arguments, "--zoo-explainers", str(empty), "--out", str(tmp_path / "none")]) == 2
    assert f"no explainer of {member.name} at {empty / zoo_explainer_path(member).name}" in capsys.readouterr().err
    assert not (empty / zoo_explainer_path(member).name).exists()


def test_demo_command_writes_pictures_and_summary(tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", "--datasets", "ct3d", "--images", "1", "--max-steps", "5", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary[0]["dataset"] == "ct3d" and summary[0]["true_class"] == "lesion"
    assert (out / "ct3d-1.png").is_file() and (out / "ct3d-1.pt").is_file()
    # a volume goes through the demo-ct3d description's explainer: amortised, pruned, on the lesion
    assert summary[0]["method"].startswith("amortized") and summary[0]["faithful"]
    assert summary[0]["iou_with_lesion"] > 0.2, summary[0]


def test_cli_rejects_bad_arguments(capsys):
    assert main(["benchmark", "--images", "0"]) == 2
    assert "--images" in capsys.readouterr().err
    # the ranking methods need a Med-CAM method being run to take their area from
    assert main(["benchmark", "--images", "1", "--methods", "rise", "--baseline-area", "amortized"]) == 2
    assert "baseline_area must be medcam or a Med-CAM method being run" in capsys.readouterr().err
    # the zoo-only dataset has no demo classifier: said, not trained on the spot or a traceback
    assert main(["benchmark", "--images", "1", "--datasets", "abdomen"]) == 2
    assert "no demo classifier for ['abdomen']" in capsys.readouterr().err


def test_masking_augmentation_relabels_images_whose_lesion_was_masked_out():
    from medcam_dicom.benchmark.training import masking_augmentation, random_blob_masks

    generator = torch.Generator().manual_seed(0)
    masks = random_blob_masks((16, 32, 32), generator)
    fractions = masks.flatten(1).float().mean(1)
    assert float(fractions.min()) >= 0.04 and float(fractions.max()) <= 0.61
    data = generate("ct", 32, seed=11)
    images, labels = masking_augmentation(data.images, data.labels, data.lesions, generator, probability=1.0)
    changed = (images != data.images).flatten(1).any(1)
    assert changed.any()
    assert torch.equal(labels[data.labels == 0], data.labels[data.labels == 0])
    for index in torch.nonzero((data.labels == 1) & (labels == 0)).flatten():
        kept = images[index][:, data.lesions[index]]
        original = data.images[index][:, data.lesions[index]]
        assert not torch.allclose(kept, original), "a relabelled image must have lost its lesion"


def test_medcam_finds_the_planted_lesion_far_better_than_chance():
    """Two lesion images of the CT test set, with the default configuration."""
    from medcam_dicom import MedCAM

    model = load_demo_classifier("ct")
    test = generate("ct", 6, seed=3)
    explainer = MedCAM(model.network)
    for index in (3, 5):
        lesion = test.lesions[index]
        explanation = explainer.explain(model.preprocess(test.images[index]))
        assert explanation.target == 1 and explanation.faithful
        area, truth = explanation.area_fraction, float(lesion.float().mean())
        chance = area * truth / (area + truth - area * truth)  # expected IoU of a random mask of this area
        assert iou(explanation.mask, lesion) >= max(0.3, 5 * chance)


def test_paired_gap_resamples_classifiers_and_says_whether_a_method_is_behind():
    from medcam_dicom.benchmark.gaps import gaps_to_baselines, paired_gap

    # every classifier has Med-CAM 0.05 behind on every image: the interval is that point, "behind"
    behind = paired_gap({f"clf{i}": [-0.05] * 5 for i in range(8)})
    assert behind.mean == pytest.approx(-0.05) and behind.low == pytest.approx(-0.05)
    assert behind.high == pytest.approx(-0.05) and behind.settled == "behind"
    assert (behind.images, behind.classifiers) == (40, 8)
    # one classifier far behind, the others slightly ahead: the mean is negative, but which classifiers are
    # drawn decides it, so the interval spans 0 - where resampling the 400 images would say "behind"
    mixed = {"bad": [-0.3] * 50, **{f"good{i}": [0.02] * 50 for i in range(7)}}
    gap = paired_gap(mixed)
    assert gap.mean == pytest.approx((-0.3 * 50 + 0.02 * 350) / 400)
    assert gap.low < 0 < gap.high and gap.settled == "level"
    assert str(gap) == str(paired_gap(mixed))  # seeded: a report reprints the same interval
    assert paired_gap({"a": [0.1, 0.2], "b": [0.3]}).settled == "ahead"
    with pytest.raises(ValueError, match="no differences"):
        paired_gap({"a": []})

    rows = [{"dataset": d, "index": i, "method": m, "precision": p}
            for d in ("ct/cnn", "mr/cnn") for i in range(3)
            for m, p in (("medcam", 0.9), ("rise", 0.8), ("occlusion", 0.95), ("gradcam", None))]
    gaps = gaps_to_baselines(rows, "medcam", ("rise", "occlusion", "gradcam"))
    assert set(gaps) == {"rise", "occlusion"}  # no precision (a "normal" decision): no pair
    assert gaps["rise"].mean == pytest.approx(0.1) and gaps["rise"].settled == "ahead"
    assert gaps["occlusion"].mean == pytest.approx(-0.05) and gaps["occlusion"].images == 6
    # at equal evidence the ranking methods' own figure is another key; Med-CAM's stays its precision
    for row in rows:
        row["equal_evidence_precision"] = {"rise": 0.6, "occlusion": 0.7}.get(row["method"])
    evidence = gaps_to_baselines(rows, "medcam", ("rise", "occlusion", "gradcam"),
                                 baseline_key="equal_evidence_precision")
    assert evidence["rise"].mean == pytest.approx(0.3) and evidence["occlusion"].mean == pytest.approx(0.2)
